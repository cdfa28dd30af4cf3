"""Modes by name: the four there are, their settings, and a new one plugs in with one entry."""
from __future__ import annotations

import pytest
from selection_cases import PARA, PARA_Y, inp

from ensemble.errors import EnsembleError
from ensemble.selection import DEFAULT_MODE, MODES, select
from ensemble.selection.modes import Mode
from ensemble.selection.results import Picked, Step


def test_the_modes_and_the_unknown_mode_message():
    assert list(MODES) == ["greedy", "greedy-strict", "caruana", "bagged"] and DEFAULT_MODE == "auto"
    with pytest.raises(EnsembleError, match="unknown selection mode 'bagging'; expected one of greedy, greedy-strict, "
                                            "caruana, bagged"):
        select(inp("para", PARA, PARA_Y), mode="bagging")


def test_a_new_mode_is_one_entry(monkeypatch):
    def last_only(pool, order, budget):
        i = order[-1]
        own = float(pool.own_scores()[i])
        return Picked([pool.ids[i]], {pool.ids[i]: 1}, [Step(1, pool.ids[i], own, own, None, True, "last")], own)

    monkeypatch.setitem(MODES, "last", Mode(last_only, note=lambda budget, trajectory: "last: the worst alone"))
    sel = select(inp("para", PARA, PARA_Y), mode="last", repeats=2, folds=2)
    assert sel.members == ["C"] and sel.weights == {"C": 1} and sel.steps is None
    assert sel.ensemble_dev_score == 0.25 and sel.mode == "last" and "last: the worst alone" in sel.notes
    assert len(sel.heldout.per_fold) == 4 and all(f.members for f in sel.heldout.per_fold)
    assert sel.settings == {}


@pytest.mark.parametrize("mode, settings", [
    ("greedy", {}), ("greedy-strict", {}), ("caruana", {"steps": 7}),
    ("bagged", {"steps": 7, "bags": 3, "fraction": 0.5, "seed": 4}),
])
def test_settings_are_reported(mode, settings):
    sel = select(inp("para", PARA, PARA_Y), mode=mode, steps=7, bags=3, seed=4, repeats=0)
    assert sel.settings == settings and sel.to_dict()["settings"] == settings
