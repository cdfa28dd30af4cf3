"""select and predict: per-id averaging, labelled test scores, --input, and predict writing what select scored."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.data import read_split
from ensemble.predfile import write_predictions
from ensemble.registry.store import Registry
from ensemble.selection import ensemble_predictions


def test_predict_averages_by_id_not_position(tmp_path, invoke):
    """Two members whose rows come in different orders: the output is the per-id average."""
    reg = tmp_path / "reg"
    sp = read_split(SAMPLE, "sts", "dev")
    ids = sp.ids
    a = np.linspace(0, 5, len(ids))
    b = np.linspace(5, 0, len(ids)) ** 1.5 / 5 ** 0.5
    for name, vals, order in (("a", a, np.arange(len(ids))), ("b", b, np.arange(len(ids))[::-1])):
        d = tmp_path / name
        d.mkdir()
        write_predictions(d / "sts-dev.csv", "sts", [ids[i] for i in order], vals[order][:, None])
        test_ids = read_split(SAMPLE, "sts", "test").ids
        write_predictions(d / "sts-test.csv", "sts", test_ids, np.ones((len(test_ids), 1)))
        assert invoke("register", "--predictions", d, "--name", name, "--data", SAMPLE, "--registry", reg).exit_code == 0
    ens = {"name": "both", "tasks": {"sts": {"members": [], "weights": {}}}}
    r = Registry(reg)
    for c in r.candidates():
        ens["tasks"]["sts"]["weights"][c.id] = 1
    r.save_ensemble("both", ens)
    out = tmp_path / "out"
    res = invoke("predict", "--data", SAMPLE, "--registry", reg, "--out", out, "--ensemble", "both")
    assert res.exit_code == 0, res.output
    lines = (out / "sts-dev-output.csv").read_text().splitlines()
    assert lines[0] == "id \t Predicted_Similiary "
    got = {line.split(" , ")[0]: float(line.split(" , ")[1]) for line in lines[1:]}
    for i, id_ in enumerate(ids):
        assert got[id_] == pytest.approx((a[i] + b[i]) / 2, abs=1e-12)


def test_predict_input_runs_the_members(tmp_path, tiny_base_dir, invoke):
    """`predict --input FILE --task T` runs the ensemble's model members on a new file and scores it when labelled."""
    reg = tmp_path / "reg"
    r = invoke("train", "--data", SAMPLE, "--base", tiny_base_dir, "--epochs", "1", "--registry", reg, "--json")
    assert r.exit_code == 0, r.output
    assert invoke("select", "--data", SAMPLE, "--registry", reg, "--mode", "greedy", "--repeats", "2", "--json").exit_code == 0
    out = tmp_path / "out"
    r = invoke("predict", "--input", SAMPLE / "sts-dev.csv", "--task", "sts", "--registry", reg, "--out", out, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output[r.output.index("{"):])
    written = Path(res["written"][0])
    lines = written.read_text().splitlines()
    assert lines[0] == "id \t Predicted_Similiary "
    assert [line.split(" , ")[0] for line in lines[1:]] == read_split(SAMPLE, "sts", "dev").ids
    # the cached dev predictions of the same single-member ensemble give the same score
    cand = json.loads(invoke("list", "--registry", reg, "--json").output)
    members = json.loads((reg / "ensembles" / "ensemble-greedy.json").read_text())["tasks"]["sts"]["weights"]
    (cid,) = members   # one epoch: one candidate
    assert res["score"] == pytest.approx(next(c for c in cand if c["id"] == cid)["dev"]["sts"], abs=1e-6)
    # --compile runs the same members through torch.compile: the same ids, the same raw scores to float noise
    r = invoke("predict", "--input", SAMPLE / "sts-dev.csv", "--task", "sts", "--registry", reg, "--out",
               tmp_path / "compiled", "--compile", "--json")
    assert r.exit_code == 0, r.output
    rows = [line.split(" , ") for line in lines[1:]]
    crows = [line.split(" , ") for line in (tmp_path / "compiled" / written.name).read_text().splitlines()[1:]]
    assert [c[0] for c in crows] == [x[0] for x in rows]
    np.testing.assert_allclose([float(c[1]) for c in crows], [float(x[1]) for x in rows], atol=1e-5, rtol=0)


def test_select_scores_labelled_test_data_without_using_it(tmp_path, invoke):
    """Where the test file carries labels, `select` shows the ensemble's test score; selection uses dev only."""
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    shutil.copyfile(SAMPLE / "sts-dev.csv", data / "sts-test-student.csv")   # a labelled test file
    y = read_split(data, "sts", "dev").labels
    ids = read_split(data, "sts", "dev").ids
    reg = tmp_path / "reg"
    for name, dev, test in (("a", y, -y), ("b", y + np.sin(np.arange(len(y))) * 2, y)):
        d = tmp_path / name
        d.mkdir()
        write_predictions(d / "sts-dev.csv", "sts", ids, dev[:, None])
        write_predictions(d / "sts-test.csv", "sts", ids, test[:, None])
        assert invoke("register", "--predictions", d, "--name", name, "--data", data, "--registry", reg).exit_code == 0
    r = invoke("select", "--data", data, "--registry", reg, "--tasks", "sts", "--repeats", "2", "--json")
    assert r.exit_code == 0, r.output
    sts = json.loads(r.output[r.output.index("{"):])["tasks"]["sts"]
    # a is perfect on dev, so it alone is the ensemble (b lowers r); on test a is exactly reversed: r = -1
    assert len(sts["weights"]) == 1
    assert sts["test"]["ensemble"] == pytest.approx(-1.0, abs=1e-12)
    assert sts["test"]["best_single"] == pytest.approx(-1.0, abs=1e-12)


@pytest.mark.parametrize("mode", ["greedy", "greedy-strict", "caruana", "bagged"])
def test_predict_dev_scores_equal_select_scores_exactly(tmp_path, monkeypatch, mode, invoke, fake_predictions):
    """`predict` writes what `select` scored: one weighted average, summed in the selection's order,
    so the dev scores of the written files equal the selection's ensemble dev scores bit for bit."""
    ids = iter(f"{k:032x}" for k in range(99, 0, -1))    # the best candidate gets the largest id:
    monkeypatch.setattr(Registry, "new_id", staticmethod(lambda: next(ids)))   # selection order != id order
    reg = tmp_path / "reg"
    for i, q in enumerate((0.62, 0.61, 0.6, 0.59, 0.58, 0.57, 0.56, 0.55)):
        d = fake_predictions(tmp_path / f"p{i}", {"sst": q, "para": q, "sts": q}, seed=10 + i)
        assert invoke("register", "--predictions", d, "--name", f"ext{i}", "--data", SAMPLE,
                      "--registry", reg).exit_code == 0
    r = invoke("select", "--data", SAMPLE, "--registry", reg, "--mode", mode, "--repeats", "0", "--json")
    assert r.exit_code == 0, r.output
    sel = json.loads(r.output[r.output.index("{"):])
    r = invoke("predict", "--data", SAMPLE, "--registry", reg, "--out", tmp_path / "out", "--json")
    assert r.exit_code == 0, r.output
    pred = json.loads(r.output[r.output.index("{"):])
    sts = sel["tasks"]["sts"]
    assert len(sts["members"]) >= 3 and sts["members"] != sorted(sts["members"])   # order matters here
    for task, entry in sel["tasks"].items():
        assert pred["dev_scores"][task] == entry["ensemble_dev_score"], task
    # the written STS values are the selection's average, member order included, bit for bit
    dev = read_split(SAMPLE, "sts", "dev")
    cands = {c.id: c for c in Registry(reg).candidates()}
    aligned = {}
    for cid in sts["members"]:
        c_ids, values = cands[cid].predictions("sts", "dev")
        pos = {i: k for k, i in enumerate(c_ids)}
        aligned[cid] = values[[pos[i] for i in dev.ids]]
    want = ensemble_predictions(aligned, {cid: sts["weights"][cid] for cid in sts["members"]})[:, 0]
    rows = (tmp_path / "out" / "sts-dev-output.csv").read_text().splitlines()[1:]
    written = {line.split(" , ")[0]: float(line.split(" , ")[1]) for line in rows}
    assert np.array_equal(np.array([written[i] for i in dev.ids]), want)


def test_predict_names_the_ensemble_it_uses(tmp_path, registry_with_imports, invoke):
    """`predict` without --ensemble uses the newest saved one, and says which, with when it was saved."""
    reg = registry_with_imports
    for name in ("first", "newest"):
        assert invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "0", "--name", name).exit_code == 0
    saved = json.loads((reg / "ensembles" / "newest.json").read_text())["created"]
    r = invoke("predict", "--data", SAMPLE, "--registry", reg, "--out", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == f"ensemble: newest (saved {saved})"
    r = invoke("predict", "--data", SAMPLE, "--registry", reg, "--out", tmp_path / "out", "--ensemble", "first",
               "--json")
    d = json.loads(r.stdout)
    assert d["ensemble"] == "first"
    assert d["ensemble_saved"] == json.loads((reg / "ensembles" / "first.json").read_text())["created"]


def test_mode_auto_shows_every_system_side_by_side(tmp_path, invoke, registry_with_imports):
    """The default mode: a table of each system's estimate per task, the choice, and the JSON behind it."""
    args = ("select", "--data", SAMPLE, "--registry", registry_with_imports, "--bags", "2", "--steps", "5",
            "--name", "auto-cli")
    r = invoke(*args, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["mode"] == "auto"
    for task, sel in doc["tasks"].items():
        assert set(sel["systems"]) == {"single", "greedy", "greedy-strict", "caruana", "bagged"}
        assert sel["chosen"] in sel["systems"] and sel["choice_reason"].startswith(sel["chosen"] + ": held-out ")
        assert sel["system"] == ("best single" if sel["chosen"] == "single" else "ensemble")
        assert sel["heldout"]["method"].startswith("nested cross-fit")
    t = invoke(*args)
    assert t.exit_code == 0, t.output
    assert "auto: held-out gain over the best single candidate, per system" in t.output
    for task, sel in doc["tasks"].items():
        assert f"auto chose {sel['chosen']}: held-out" in " ".join(t.output.split())
