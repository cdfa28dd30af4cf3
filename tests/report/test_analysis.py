"""analysis: confusion matrices, off-by-k, calibration and gold bands, fixes/breaks, worst errors and
diversity, each on predictions made by hand with the answers worked out by hand."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from analysis_cases import sst_registry
from ensemble.report import analysis
from ensemble.errors import EnsembleError
from ensemble.registry.store import Registry


def onehot(classes, k=5, p=0.6):
    x = np.full((len(classes), k), (1 - p) / (k - 1))
    x[np.arange(len(classes)), classes] = p
    return x


SST_GOLD = [0, 1, 2, 3, 4, 4, 2, 0]
SST_PRED = [0, 2, 2, 0, 4, 1, 2, 4]   # distances 0 1 0 3 0 3 0 4


def test_sst_confusion_per_class_and_off_by_k():
    q = analysis.quality("sst", onehot(SST_PRED), np.array(SST_GOLD))
    assert q["confusion"] == [[1, 0, 0, 0, 1],
                              [0, 0, 1, 0, 0],
                              [0, 0, 2, 0, 0],
                              [1, 0, 0, 0, 0],
                              [0, 1, 0, 0, 1]]
    assert q["per_class_accuracy"] == [0.5, 0.0, 1.0, 0.0, 0.5]
    assert q["off_by"] == {1: 1, 2: 0, 3: 2, 4: 1}


def test_a_class_without_rows_has_no_accuracy():
    assert analysis.per_class_accuracy([[2, 0], [0, 0]]) == [1.0, None]


def test_para_matrix_and_calibration_bands():
    prob = np.array([0.05, 0.15, 0.55, 0.95, 1.0, 0.5, 0.45])
    gold = np.array([0, 1, 1, 1, 0, 0, 0])     # 0.5 rounds to 0 (half to even, as the course rounds)
    q = analysis.quality("para", prob[:, None], gold)
    assert q["confusion"] == [[3, 1], [1, 2]]
    bands = {b["low"]: b for b in q["bands"]}
    assert len(q["bands"]) == 10
    assert [bands[low]["rows"] for low in sorted(bands)] == [1, 1, 0, 0, 1, 2, 0, 0, 0, 2]
    assert bands[0.0] == {"low": 0.0, "high": 0.1, "rows": 1, "mean_probability": 0.05, "positive_rate": 0.0,
                          "accuracy": 1.0}
    assert bands[0.1]["accuracy"] == 0.0 and bands[0.1]["positive_rate"] == 1.0
    assert bands[0.5]["mean_probability"] == pytest.approx(0.525)
    assert (bands[0.5]["positive_rate"], bands[0.5]["accuracy"]) == (0.5, 1.0)
    assert (bands[0.9]["rows"], bands[0.9]["positive_rate"], bands[0.9]["accuracy"]) == (2, 0.5, 0.5)   # 1.0 is in
    assert [bands[0.2][k] for k in ("rows", "mean_probability", "positive_rate", "accuracy")] == [0, None, None, None]


def test_sts_pearson_and_errors_by_gold_band():
    gold = np.array([0.5, 0.9, 1.5, 4.0, 5.0, 4.5])
    score = np.array([1.0, 0.5, 3.0, 4.0, 4.0, 5.0])
    bands = analysis.quality("sts", score[:, None], gold)["bands"]
    assert [b["rows"] for b in bands] == [2, 1, 0, 0, 3]
    assert bands[0]["pearson"] == pytest.approx(-1.0)
    assert bands[0]["mean_abs_error"] == pytest.approx(0.45) and bands[0]["mean_error"] == pytest.approx(0.05)
    assert bands[1]["pearson"] is None and bands[1]["mean_abs_error"] == pytest.approx(1.5)
    assert bands[2] == {"low": 2.0, "high": 3.0, "rows": 0, "pearson": None, "mean_abs_error": None, "mean_error": None}
    assert bands[4]["pearson"] == 0.0          # no linear relation: cov = 0 by hand
    assert bands[4]["mean_abs_error"] == pytest.approx(0.5) and bands[4]["mean_error"] == pytest.approx(-1 / 6)


def test_fixes_and_breaks_exact():
    single = onehot([0, 1, 0, 3, 3, 4, 2, 0])   # right: T T F T F T T T
    ens = onehot(SST_PRED)                      # right: T F T F T F T F
    assert analysis.changes("sst", ens, single, np.array(SST_GOLD)) == ([2, 4], [1, 3, 5, 7])


def test_sts_rows_are_right_within_one_point():
    gold = np.array([1.0, 2.0, 3.0, 0.0])
    ens = np.array([[1.5], [3.5], [3.0], [1.0]])       # right: T F T T (1.0 off is right)
    single = np.array([[2.5], [2.5], [4.2], [1.5]])    # right: F T F F
    assert analysis.changes("sts", ens, single, gold) == ([0, 2, 3], [1])


def test_worst_errors_by_distance_then_gold_probability():
    raw = onehot(SST_PRED)
    raw[3] = [.5, .1, .1, .1, .2]      # gold 3 gets 0.1 -> worse than row 5
    raw[5] = [.1, .4, .1, .1, .3]      # gold 4 gets 0.3
    assert analysis.worst_rows("sst", raw, np.array(SST_GOLD), 10) == [7, 3, 5, 1]
    assert analysis.worst_rows("sst", raw, np.array(SST_GOLD), 2) == [7, 3]
    assert analysis.worst_rows("sts", np.array([[1.0], [4.0], [2.0]]), np.array([1.5, 1.0, 2.0]), 2) == [1, 0]


def test_diversity_correlation_and_disagreement():
    a = np.array([[0.1], [0.9], [0.6], [0.4]])
    b = np.array([[0.2], [0.8], [0.4], [0.4]])
    d = analysis.diversity("para", {"a": a, "b": b})
    assert d["members"] == ["a", "b"]
    r = 0.24 / math.sqrt(0.34 * 0.19)      # centred sums by hand
    assert d["correlation"][0] == [1.0, pytest.approx(r)] and d["correlation"][1][0] == pytest.approx(r)
    assert d["disagreement"] == [[0.0, 0.25], [0.25, 0.0]]
    assert analysis.diversity("sts", {"a": a, "b": b})["disagreement"] is None
    assert analysis.per_row_number("sst", np.array([[0, 0, 1, 0, 0], [.5, 0, 0, 0, .5]])).tolist() == [2.0, 2.0]


def test_analyze_a_saved_ensemble_against_the_best_single(tmp_path):
    reg, data, ids = sst_registry(tmp_path, runs=False)
    view = analysis.analyze(reg, data, "g", worst=3)
    json.dumps(view)                                # JSON-safe as it is
    t = view["tasks"]["sst"]
    assert list(view["tasks"]) == ["sst"] and view["notes"] == []
    assert t["members"] == {ids["A"]: 1, ids["B"]: 1} and t["best_single_id"] == ids["A"]
    assert (t["ensemble_score"], t["best_single_score"]) == (5 / 6, 4 / 6)
    assert t["ensemble"]["confusion"] == [[0, 1, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 2, 0, 0], [0, 0, 0, 1, 0],
                                          [0, 0, 0, 0, 1]]
    assert t["best_single"]["confusion"] == [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 0],
                                             [0, 0, 0, 1, 0]]
    assert t["ensemble"]["per_class_accuracy"] == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert t["ensemble"]["off_by"] == {"1": 1, "2": 0, "3": 0, "4": 0}
    assert t["best_single"]["off_by"] == {"1": 2, "2": 0, "3": 0, "4": 0}
    assert (t["fixes"], t["breaks"]) == (2, 1)
    assert t["fixed"] == [{"id": "s5", "text_a": "superb !", "text_b": None, "gold": 4, "ensemble": 4, "best_single": 3},
                          {"id": "s6", "text_a": "meh .", "text_b": None, "gold": 2, "ensemble": 2, "best_single": 3}]
    assert t["broken"] == [{"id": "s1", "text_a": "awful .", "text_b": None, "gold": 0, "ensemble": 1,
                            "best_single": 0}]
    assert t["worst"] == [{"id": "s1", "text_a": "awful .", "text_b": None, "gold": 0, "ensemble": 1,
                           "members": {ids["A"]: 0, ids["B"]: 1}}]
    assert t["diversity"]["disagreement"][0][1] == pytest.approx(5 / 6)
    expected_a = [1.0, 1.5, 2.0, 2.5, 2.7, 2.5]     # sum_k k p_k, by hand
    expected_b = [1.25, 1.5, 2.15, 1.6, 3.9, 2.1]
    assert t["diversity"]["correlation"][0][1] == pytest.approx(np.corrcoef(expected_a, expected_b)[0, 1])
    assert [s["score"] for s in t["curve"]["steps"]] == [4 / 6, 5 / 6]
    assert t["curve"]["best_single"] == 4 / 6 and t["curve"]["heldout"] is None   # selected with repeats 0


def test_analyze_notes_a_registry_changed_since_selection(tmp_path):
    reg, data, ids = sst_registry(tmp_path, runs=False)
    doc = reg.load_ensemble("g")
    doc["name"] = "only-a"
    doc["tasks"]["sst"]["selected"] = {"members": [ids["A"]], "weights": {ids["A"]: 1}}
    reg.save_ensemble("only-a", doc)
    view = analysis.analyze(reg, data, "only-a")
    assert view["tasks"]["sst"]["members"] == {ids["A"]: 1}
    assert (view["tasks"]["sst"]["fixes"], view["tasks"]["sst"]["breaks"]) == (0, 0)
    assert view["notes"] == ["sst: the registry changed since only-a was selected: today's selection picks other "
                             "members (the selection curve shows today's; the analysis shows the saved members)"]


def test_analyze_refuses_what_it_cannot_show(tmp_path):
    reg, data, ids = sst_registry(tmp_path, runs=False)
    with pytest.raises(EnsembleError, match=r"ensemble g has no members for sts \(it has sst\)"):
        analysis.analyze(reg, data, "g", tasks=("sts",))
    with pytest.raises(EnsembleError, match="--worst -1: expected 0 or more rows"):
        analysis.analyze(reg, data, "g", worst=-1)
    reg.remove(ids["B"], allow=["g"])
    with pytest.raises(EnsembleError, match=rf"ensemble g, task sst: member\(s\) {ids['B']} have no usable dev"):
        analysis.analyze(Registry(reg.root), data, "g")



def test_a_stale_member_is_refused_with_the_reason(tmp_path):
    reg, data, ids = sst_registry(tmp_path, runs=False)
    path = data / "ids-sst-dev.csv"
    path.write_text(path.read_text().replace("Meh .", "Meh !"))
    with pytest.raises(EnsembleError, match=rf"(?s)member\(s\) {ids['A']}, {ids['B']} have no usable dev.*"
                                            rf"candidate {ids['A']} has stale cached predictions \(sst-dev "
                                            r"\(ids-sst-dev.csv changed\)\)"):
        analysis.analyze(reg, data, "g")
