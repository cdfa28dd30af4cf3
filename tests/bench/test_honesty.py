"""The known-truth simulation (deterministic by seed, its summary by hand) and the real check
(held-out rows by id, each mode against the best single chosen on the rest)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ensemble.bench.honesty import Scenario, run_honesty, summarise
from ensemble.bench.realcheck import holdout_rows, real_check
from ensemble.data import PACKAGE_SAMPLE, read_split
from ensemble.errors import EnsembleError
from ensemble.predfile import write_predictions
from ensemble.registry.register import register_predictions
from ensemble.registry.store import Registry
from ensemble.selection import TaskInput, score_on, select

TINY = [Scenario("tiny-sts", "sts", 4, 2, 0.1, 60, n_pop=400),
        Scenario("tiny-sst", "sst", 3, 2, 0.1, 60, n_pop=400)]
MODES = ("greedy", "greedy-strict", "bagged")


def test_deterministic_by_seed():
    kw = dict(replications=3, scenarios=TINY, modes=MODES, folds=3, repeats=1, bags=2, steps=5)
    a, b, c = run_honesty(seed=1, **kw), run_honesty(seed=1, **kw), run_honesty(seed=2, **kw)
    assert repr(a) == repr(b)          # repr: NaN-safe, bit-for-bit floats
    assert repr(a) != repr(c)
    assert [(r["scenario"], r["mode"]) for r in a["rows"]] == [(s.name, m) for s in TINY for m in MODES]
    for r in a["rows"]:
        assert 0.0 <= r["coverage"] <= 1.0 and r["replications"] == 3
    assert set(a["mean_true_gain"]) == set(MODES) and "Nadeau-Bengio" in a["interval"]


def test_unknown_scenario_or_mode():
    with pytest.raises(EnsembleError, match="unknown or no scenario"):
        run_honesty(2, ["nope"])
    with pytest.raises(EnsembleError, match="unknown or no mode"):
        run_honesty(2, TINY, modes=("nope",))


def test_summary_by_hand():
    # errors -1 0 1: bias 0, sd 1, oracle width 3.92; widths 2 and 4 -> ratio 3 / 3.92
    s = summarise([-1.0, 0.0, 1.0], [True, True, False], [2.0, 4.0, 3.0], [0.1, 0.2, 0.3], [0.0, 0.2, 0.4])
    assert s["bias"] == 0.0 and s["sd_error"] == 1.0 and math.isclose(s["rmse"], math.sqrt(2 / 3))
    assert math.isclose(s["coverage"], 2 / 3) and math.isclose(s["width_ratio"], 3 / 3.92)
    assert math.isclose(s["true_gain"], 0.2) and not s["meets_targets"]


def test_holdout_rows_by_id_not_position():
    ids = [f"i{k}" for k in range(50)]
    held = holdout_rows(ids, 0.3, 0, 1)
    assert len(held) == 15 and holdout_rows(ids[::-1], 0.3, 0, 1) == held
    assert holdout_rows(ids, 0.3, 0, 2) != held and holdout_rows(ids, 0.3, 1, 1) != held


def _registry(tmp_path) -> Registry:
    reg = Registry(tmp_path / "reg")
    rng = np.random.default_rng(0)
    for i, q in enumerate((0.6, 0.5, 0.4)):
        folder = tmp_path / f"p{i}"
        folder.mkdir()
        sp = read_split(PACKAGE_SAMPLE, "sts", "dev")
        write_predictions(folder / "sts-dev.csv", "sts", sp.ids, (q * sp.labels + (1 - q) * rng.random(len(sp)) * 5)[:, None])
        register_predictions(reg, folder, f"ext{i}", PACKAGE_SAMPLE)
    return reg


def test_real_check_scores_each_mode_on_the_held_out_ids(tmp_path):
    reg = _registry(tmp_path)
    r = real_check(reg, PACKAGE_SAMPLE, holdout=0.4, splits=2, modes=("greedy", "caruana"), tasks=("sts",))
    assert [(row["task"], row["mode"]) for row in r["rows"]] == [("sts", "greedy"), ("sts", "caruana")]
    # by hand: each split selects on the ids outside its held-out ids and scores on those
    sp = read_split(PACKAGE_SAMPLE, "sts", "dev")
    cands = {c.id: c.predictions("sts", "dev") for c in reg.candidates()}      # rows in dev order
    gains = []
    for split in (0, 1):
        held = holdout_rows([str(i) for i in sp.ids], 0.4, 0, split)
        k_in = [k for k, i in enumerate(sp.ids) if str(i) not in held]
        k_out = [k for k, i in enumerate(sp.ids) if str(i) in held]
        inp = TaskInput("sts", [sp.ids[k] for k in k_in], sp.labels[k_in],
                        {c: ([ids[k] for k in k_in], p[k_in]) for c, (ids, p) in cands.items()})
        sel = select(inp, "caruana", repeats=0)
        held_p = {c: p[k_out] for c, (_, p) in cands.items()}
        gains.append(score_on("sts", held_p, sp.labels[k_out], sel.weights)
                     - score_on("sts", held_p, sp.labels[k_out], {sel.best_single[0]: 1}))
    car = r["rows"][1]
    assert math.isclose(car["mean_gain"], np.mean(gains)) and math.isclose(car["sd_gain"], np.std(gains, ddof=1))
    assert r["rows"][0]["vs_greedy"] == 0.0
    assert math.isclose(car["vs_greedy"], car["mean_gain"] - r["rows"][0]["mean_gain"])


def test_summarise_by_hand_and_the_oracle_follows_the_level():
    # errors +-1 four times: mean 0, SD sqrt(4/3); the oracle interval is 2 z SD wide
    err, covered, width = [1.0, -1.0, 1.0, -1.0], [True, True, False, True], [2.0, 2.0, 2.0, 2.0]
    sd = (4 / 3) ** 0.5
    row = summarise(err, covered, width, [0.1, 0.1, 0.1, 0.1], [0.2, 0.0, 0.2, 0.0])
    assert row["coverage"] == 0.75 and row["bias"] == 0.0 and row["rmse"] == 1.0
    assert row["oracle_width"] == pytest.approx(2 * 1.96 * sd, rel=1e-6)
    assert row["width_ratio"] == pytest.approx(2.0 / (2 * 1.96 * sd), rel=1e-6)
    assert row["true_gain"] == pytest.approx(0.1) and row["estimate"] == pytest.approx(0.1)
    at90 = summarise(err, covered, width, [0.1] * 4, [0.1] * 4, level=0.90)
    assert at90["oracle_width"] == pytest.approx(2 * 1.64 * sd, rel=1e-6)


def test_auto_beside_the_modes_with_its_choices_and_its_paired_difference():
    r = run_honesty(replications=3, scenarios=TINY[:1], modes=("greedy", "caruana", "auto"), folds=3, repeats=1,
                    bags=2, steps=5)
    rows = {row["mode"]: row for row in r["rows"]}
    auto = rows["auto"]
    assert sum(auto["chosen"].values()) == 3 and set(auto["chosen"]) <= {"single", *MODES, "greedy", "caruana"}
    best = max(("greedy", "caruana"), key=lambda m: rows[m]["true_gain"])
    assert auto["best_fixed"] == best
    assert auto["vs_best_fixed"] == pytest.approx(auto["true_gain"] - rows[best]["true_gain"])
    assert "naive_bias" in auto and "(auto: nested)" in r["interval"]


def test_real_check_with_auto_reports_estimates_and_the_choice(tmp_path):
    reg = _registry(tmp_path)
    r = real_check(reg, PACKAGE_SAMPLE, holdout=0.4, splits=2, modes=("greedy", "auto"), tasks=("sts",), bags=2,
                   steps=5, folds=2)
    rows = {row["mode"]: row for row in r["rows"]}
    assert sum(rows["auto"]["chosen"].values()) == 2 and rows["greedy"]["mean_estimate"] is not None
    full = r["full_dev"]["sts"]
    from ensemble.selection import choose
    assert full["chosen"] == choose({s: v["estimate"] for s, v in full["systems"].items() if s != "single"})
