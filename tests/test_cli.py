"""The CLI and the end-to-end workflow: register predictions -> select -> predict -> validate -> submit,
`ensemble run` on the packaged sample with a tiny model, and error handling (red message, exit 1)."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.data import read_split
from ensemble.predfile import write_predictions
from ensemble.data import PACKAGE_SAMPLE

runner = CliRunner()
SAMPLE = PACKAGE_SAMPLE


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def fake_predictions(folder: Path, quality: dict[str, float], seed: int, shuffle: bool = True) -> Path:
    """Prediction files for the sample's dev and test ids: the truth blended with noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for task, q in quality.items():
        for split in ("dev", "test"):
            sp = read_split(SAMPLE, task, split)
            n = len(sp)
            order = rng.permutation(n) if shuffle else np.arange(n)
            if task == "sst":
                onehot = np.eye(5)[sp.labels] if sp.labelled else rng.dirichlet(np.ones(5), n)
                v = q * onehot + (1 - q) * rng.dirichlet(np.ones(5), n)
            elif task == "para":
                y = sp.labels.astype(float) if sp.labelled else rng.random(n)
                v = (q * y + (1 - q) * rng.random(n))[:, None]
            else:
                y = sp.labels if sp.labelled else rng.random(n) * 5
                v = (q * y + (1 - q) * rng.random(n) * 5)[:, None]
            write_predictions(folder / f"{task}-{split}.csv", task, [sp.ids[i] for i in order], v[order])
    return folder


@pytest.fixture
def registry_with_imports(tmp_path):
    reg = tmp_path / "reg"
    for i, q in enumerate((0.6, 0.5, 0.4)):
        d = fake_predictions(tmp_path / f"p{i}", {"sst": q, "para": q, "sts": q}, seed=i)
        r = invoke("register", "--predictions", d, "--name", f"ext{i}", "--data", SAMPLE, "--registry", reg)
        assert r.exit_code == 0, r.output
    return reg


def test_import_select_predict_validate_submit(tmp_path, registry_with_imports):
    reg = registry_with_imports
    listed = json.loads(invoke("list", "--registry", reg, "--json").output)
    assert sorted(c["name"] for c in listed) == ["ext0", "ext1", "ext2"]
    assert all(c["kind"] == "predictions" for c in listed)

    r = invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "4", "--json")
    assert r.exit_code == 0, r.output
    sel = json.loads(r.output[r.output.index("{"):])
    assert set(sel["tasks"]) == {"sst", "para", "sts"}
    doc = json.loads((reg / "ensembles" / "ensemble-greedy.json").read_text())
    for task, entry in doc["tasks"].items():
        assert set(entry["weights"]) == set(entry["prediction_sha256"])

    out = tmp_path / "predictions"
    r = invoke("predict", "--data", SAMPLE, "--registry", reg, "--out", out)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{t}-{s}-output.csv" for t in ("sst", "para", "sts") for s in ("dev", "test"))
    assert invoke("validate", out, "--data", SAMPLE).exit_code == 0

    subs = tmp_path / "subs"
    assert invoke("submit", "--predictions", out, "--out", subs, "--data", SAMPLE, "--registry", reg).exit_code == 0
    assert invoke("submit", "--predictions", out, "--out", subs, "--data", SAMPLE, "--registry", reg).exit_code == 0
    zips = sorted(subs.glob("*.zip"))
    assert len(zips) == 2   # never overwrites
    with zipfile.ZipFile(zips[0]) as z:
        manifest = json.loads(z.read("MANIFEST.json"))
        assert z.read("predictions/sts-dev-output.csv") == (out / "sts-dev-output.csv").read_bytes()
    assert manifest["ensemble"]["name"] == "ensemble-greedy"
    assert manifest["ensemble"]["sample_data"] is True


def test_predict_averages_by_id_not_position(tmp_path):
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
    from ensemble.registry import Registry
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


def test_errors_are_red_messages_with_exit_1(tmp_path):
    r = invoke("select", "--data", SAMPLE, "--registry", tmp_path / "empty")
    assert r.exit_code == 1
    assert "holds no candidates" in r.output
    r = invoke("show", "nope", "--registry", tmp_path / "empty")
    assert r.exit_code == 1 and "no candidate 'nope'" in r.output
    r = invoke("train", "--data", tmp_path / "missing", "--base", "minilm")
    assert r.exit_code == 1 and "no such folder" in r.output
    r = invoke("train", "--data", SAMPLE, "--tasks", "sst,nli")
    assert r.exit_code == 1 and "unknown task 'nli'" in r.output
    r = invoke("select", "--data", SAMPLE, "--registry", tmp_path / "empty", "--mode", "bagging")
    assert r.exit_code == 1 and "--mode bagging" in r.output


def test_validate_reports_problems_and_exits_1(tmp_path):
    out = tmp_path / "bad"
    out.mkdir()
    (out / "sst-dev-output.csv").write_text("id \t Predicted_Sentiment \nnot-an-id , 7 \n")
    r = invoke("validate", out, "--data", SAMPLE)
    assert r.exit_code == 1
    assert "sst-dev-output.csv" in r.output
    assert "para-test-output.csv" in r.output   # missing file reported too


def test_remove_asks_unless_yes(tmp_path, registry_with_imports):
    reg = registry_with_imports
    cid = json.loads(invoke("list", "--registry", reg, "--json").output)[0]["id"]
    r = runner.invoke(app, ["remove", cid, "--registry", str(reg)], input="n\n")
    assert r.exit_code == 1 and "kept" in r.output
    assert len(json.loads(invoke("list", "--registry", reg, "--json").output)) == 3
    assert invoke("remove", cid, "--registry", reg, "--yes").exit_code == 0
    assert len(json.loads(invoke("list", "--registry", reg, "--json").output)) == 2


def test_verify_exit_code(tmp_path, registry_with_imports):
    reg = registry_with_imports
    assert invoke("verify", "--registry", reg).exit_code == 0
    victim = next((reg / "candidates").iterdir()) / "predictions" / "sst-dev.csv"
    data = bytearray(victim.read_bytes())
    data[-5] ^= 1
    victim.write_bytes(bytes(data))
    r = invoke("verify", "--registry", reg)
    assert r.exit_code == 1
    assert "predictions/sst-dev.csv" in r.output and "sha256 mismatch" in r.output


def test_bench_select_json():
    r = invoke("bench", "select", "--candidates", "20", "--rows", "500", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["candidates"] == 20 and d["rows"] == 500
    assert set(d["results"]) == {"sst/greedy", "para/greedy", "sts/greedy"}
    assert all(res["identical"] for res in d["results"].values())   # fast and plain pick the same ensemble


def test_bench_random_base(tmp_path):
    r = invoke("bench", "random-base", tmp_path / "rb", "--layers", "1", "--hidden", "32", "--heads", "2")
    assert r.exit_code == 0, r.output
    assert "ensemble bench inference --base" in r.output and (tmp_path / "rb" / "model.safetensors").is_file()
    r = invoke("bench", "random-base", tmp_path / "rb", "--layers", "1", "--hidden", "32", "--heads", "2")
    assert r.exit_code == 1 and "exists and is not an empty folder" in r.output


def test_bench_train_prints_the_targets(tiny_base_dir):
    r = invoke("bench", "train", "--data", SAMPLE, "--base", tiny_base_dir, "--steps", "2", "--batch-size", "2")
    assert r.exit_code == 0, r.output
    assert "targets" in r.output and "SMART step / plain step" in r.output and "<= 2.5" in r.output
    assert "met" in r.output and "smart_floor.floor_ratio" in r.output
    r = invoke("bench", "train", "--data", SAMPLE, "--base", tiny_base_dir, "--steps", "2", "--batch-size", "2", "--json")
    d = json.loads(r.stdout)                                                # the sample banner goes to stderr
    ratio = d["targets"]["SMART step / plain step"]
    assert ratio["met"] == (ratio["value"] <= 2.5) and d["smart_floor"]["floor_ratio"] > 1


def test_run_on_sample_with_tiny_model_resumes(tmp_path, monkeypatch, tiny_base_dir):
    """`ensemble run` end to end on the packaged sample; a second run skips every finished configuration."""
    monkeypatch.chdir(tmp_path)
    r = invoke("run", "--base", tiny_base_dir, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output[r.output.index("{"):])
    assert res["sample"] is True
    assert len(res["trained"]) == 4 and res["skipped"] == []
    assert Path(res["submission"]).exists()
    assert invoke("validate", "predictions").exit_code == 0
    n_cands = len(list((tmp_path / "checkpoints" / "candidates").iterdir()))
    assert n_cands >= 4
    r2 = invoke("run", "--base", tiny_base_dir, "--json")
    res2 = json.loads(r2.output[r2.output.index("{"):])
    assert res2["trained"] == [] and len(res2["skipped"]) == 4
    assert len(list((tmp_path / "checkpoints" / "candidates").iterdir())) == n_cands
    assert len(list((tmp_path / "submissions").glob("*.zip"))) == 2


def test_pretrain_then_train_from_it_shows_provenance(tmp_path, tiny_base_dir):
    """`ensemble pretrain` writes an encoder that `ensemble train --base` takes; `list` shows where it came from."""
    out = tmp_path / "adapted"
    r = invoke("pretrain", "--data", SAMPLE, "--base", tiny_base_dir, "--tasks", "sst", "--steps", "3",
               "--batch-size", "8", "--checkpoint-every", "2", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    prov = json.loads((out / "ensemble_pretrain.json").read_text())
    assert prov["steps"] == 3 and "ids-sst-train.csv" in prov["data"]
    reg = tmp_path / "reg"
    r = invoke("train", "--data", SAMPLE, "--base", out, "--tasks", "sst", "--epochs", "1", "--registry", reg, "--json")
    assert r.exit_code == 0, r.output
    listed = json.loads(invoke("list", "--registry", reg, "--json").output)
    assert listed[0]["base_provenance"]["steps"] == 3


def test_predict_input_runs_the_members(tmp_path, tiny_base_dir):
    """`predict --input FILE --task T` runs the ensemble's model members on a new file and scores it when labelled."""
    reg = tmp_path / "reg"
    r = invoke("train", "--data", SAMPLE, "--base", tiny_base_dir, "--epochs", "1", "--registry", reg, "--json")
    assert r.exit_code == 0, r.output
    assert invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "2", "--json").exit_code == 0
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


def test_select_scores_labelled_test_data_without_using_it(tmp_path):
    """Where the test file carries labels, `select` shows the ensemble's test score; selection uses dev only."""
    import shutil

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


def test_inference_uses_the_training_truncation(tmp_path, tiny_base_dir):
    """A model trained with --max-length N predicts with the same truncation when it is re-run later:
    `register --refresh --force` recomputes exactly the predictions cached at training time."""
    reg = tmp_path / "reg"
    r = invoke("train", "--data", SAMPLE, "--base", tiny_base_dir, "--epochs", "1", "--max-length", "6",
               "--registry", reg, "--json")
    assert r.exit_code == 0, r.output
    (cand,) = (reg / "candidates").iterdir()
    before = {p.name: p.read_bytes() for p in (cand / "predictions").iterdir()}
    r = invoke("register", "--refresh", "--force", "--data", SAMPLE, "--registry", reg)
    assert r.exit_code == 0, r.output
    after = {p.name: p.read_bytes() for p in (cand / "predictions").iterdir()}
    assert after == before


@pytest.mark.parametrize("mode", ["greedy", "caruana"])
def test_predict_dev_scores_equal_select_scores_exactly(tmp_path, monkeypatch, mode):
    """`predict` writes what `select` scored: one weighted average, summed in the selection's order,
    so the dev scores of the written files equal the selection's ensemble dev scores bit for bit."""
    from ensemble.registry import Registry

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
    from ensemble.selection import ensemble_predictions

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
