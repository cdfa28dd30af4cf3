"""Bagged ensemble selection on the hand-worked STRICT case (selection_cases), and its bag draws."""
from __future__ import annotations

import math

import numpy as np
from selection_cases import STRICT, STRICT_Y, inp

from ensemble.selection import EnsembleSelector, content_hash, ensemble_predictions, score_on, select


def _library_order():
    """The pool's order: content hash of the predictions, then id."""
    return sorted(STRICT, key=lambda c: (content_hash(STRICT[c]), c))


def test_full_library_bags_are_normalised_caruana():
    # fraction 1: each bag is the whole library, so the mean is caruana's {A: 1, B: 1} / 2
    sel = select(inp("para", STRICT, STRICT_Y), mode="bagged", bags=3, fraction=1.0, repeats=0)
    assert sel.weights == {"A": 0.5, "B": 0.5}
    assert sel.members == [c for c in _library_order() if c in "AB"]
    assert sel.ensemble_dev_score == 1.0
    assert sel.settings == {"steps": 50, "bags": 3, "fraction": 1.0, "seed": 0}
    assert any(n.startswith("bagged: 3 bags of 1 of the library") for n in sel.notes)


def test_one_candidate_bags_follow_the_content_order():
    # fraction 1/3 of 3: each bag holds one candidate, its whole ensemble (weight 1); bag b takes
    # place default_rng([seed, b]).permutation(3)[0] of the library in content order
    lib = _library_order()
    want: dict[str, float] = {}
    for b in range(4):
        c = lib[int(np.random.default_rng([7, b]).permutation(3)[0])]
        want[c] = want.get(c, 0.0) + 0.25
    got = EnsembleSelector("para", "bagged", bags=4, fraction=1 / 3, seed=7).fit(STRICT, STRICT_Y).weights_
    assert got.keys() == want.keys() and all(math.isclose(got[c], want[c]) for c in want)


def test_two_candidate_bags_by_hand():
    # steps 2, worked in selection_cases: {A, B} -> A .5 B .5; {A, D} -> A 1; {B, D} -> D 1
    by_bag = {frozenset("AB"): {"A": 0.5, "B": 0.5}, frozenset("AD"): {"A": 1.0}, frozenset("BD"): {"D": 1.0}}
    lib = _library_order()
    want = {c: 0.0 for c in lib}
    for b in range(5):
        pair = frozenset(lib[int(i)] for i in np.random.default_rng([2, b]).permutation(3)[:2])
        for c, w in by_bag[pair].items():
            want[c] += w / 5
    est = EnsembleSelector("para", "bagged", steps=2, bags=5, fraction=2 / 3, seed=2).fit(STRICT, STRICT_Y)
    assert est.weights_.keys() == {c for c in want if want[c] > 0}
    assert all(math.isclose(est.weights_[c], want[c]) for c in est.weights_)
    assert math.isclose(sum(est.weights_.values()), 1.0)
    avg = ensemble_predictions(STRICT, est.weights_)
    assert np.allclose(avg, sum(w * STRICT[c] for c, w in est.weights_.items()))
    assert score_on("para", STRICT, STRICT_Y, est.weights_) == est.score_
