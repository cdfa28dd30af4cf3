"""``ensemble search`` on tiny models: trials as training runs into the registry, pruning by a
scripted objective, the study beside the registry, ``verify`` checking both, ``search show``."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.data import PACKAGE_SAMPLE
from ensemble.registry.runs import read_runs
from ensemble.registry.store import Registry
from ensemble.search import trials as trials_mod
from ensemble.search.space import load_space
from ensemble.search.study import check_searches, open_study
from ensemble.search.trials import SearchOptions, run_search
from fixtures_torch import tiny_base, torch_one_thread  # noqa: F401

optuna = pytest.importorskip("optuna")

SPACE = """
[defaults]
base = "{base}"
epochs = 2
batch_size = 8
[space]
lr = {{ uniform = [1e-3, 9e-3] }}
"""


def space_file(folder: Path, base: Path, name: str = "tiny") -> Path:
    p = folder / f"{name}.toml"
    p.write_text(SPACE.format(base=base))
    return p


def scripted(root: Path):
    """The mean dev score a trial reports: 1 - lr * 100 + epoch / 1000, from the run's own record
    (the smaller its learning rate, the better the trial): the pruner's choice is known by hand."""
    def mean_dev(entry):
        lr = {r["run_id"]: r["config"]["lr"] for r in read_runs(root)}[entry["run_id"]]
        return 1 - lr * 100 + entry["epoch"] / 1000
    return mean_dev


def test_a_search_prunes_a_trial_after_its_first_epoch_and_keeps_its_candidates(tmp_path, tiny_base, monkeypatch):
    root = tmp_path / "reg"
    monkeypatch.setattr(trials_mod, "mean_dev", scripted(root))
    space = load_space(space_file(tmp_path, tiny_base))
    opts = SearchOptions(trials=6, sampler="random", seed=0, pruner="median", device="cpu")
    result = run_search(Registry(root), space, PACKAGE_SAMPLE, opts)
    study = open_study(root, "tiny", None, create=False)
    trials = study.get_trials()
    assert len(trials) == 6 and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    # the median rule by hand: trial k (k >= 2) is pruned after epoch 1 iff its epoch-1 score is below
    # the median of the earlier finished trials' epoch-1 scores
    lrs = [t.params["lr"] for t in trials]
    for t in trials[2:]:
        earlier = sorted(1 - u.params["lr"] * 100 + 0.001 for u in trials[:t.number] if u.state.name != "RUNNING")
        median = (earlier[(len(earlier) - 1) // 2] + earlier[len(earlier) // 2]) / 2
        assert (t.state.name == "PRUNED") == (1 - lrs[t.number] * 100 + 0.001 < median), t.number
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned, f"no trial pruned with lrs {lrs}"
    records = {r["search"]["trial"]: r for r in read_runs(root)}
    reg = Registry(root)
    for t in pruned:
        r = records[t.number]
        assert r["status"] == "pruned" and r["pruned_at"] == 1 and len(r["epochs"]) == 1
        assert r["candidates"] and all(reg.get(c).manifest["training"]["run_id"] == r["run_id"] for c in r["candidates"])
        assert list(t.intermediate_values) == [1]
    for t in trials:
        if t.state.name == "COMPLETE":
            assert records[t.number]["status"] == "complete" and len(records[t.number]["epochs"]) == 2
            assert t.value == pytest.approx(1 - t.params["lr"] * 100 + 0.002)
    assert result["epochs_saved"] == len(pruned) and result["epochs_spent"] == 12 - len(pruned)
    assert result["best"]["params"]["lr"] == min(t.params["lr"] for t in trials if t.state.name == "COMPLETE")
    assert check_searches(root) == []
    assert Registry(root).verify()[1] == []


def test_a_trial_whose_training_raises_is_failed_in_study_and_record(tmp_path, tiny_base, monkeypatch):
    root = tmp_path / "reg"

    def broken(entry):
        raise trials_mod.EnsembleError("scripted failure")
    monkeypatch.setattr(trials_mod, "mean_dev", broken)
    space = load_space(space_file(tmp_path, tiny_base))
    run_search(Registry(root), space, PACKAGE_SAMPLE, SearchOptions(trials=1, seed=0, device="cpu"))
    t = open_study(root, "tiny", None, create=False).trials[0]
    assert t.state.name == "FAIL" and t.user_attrs["error"] == "scripted failure"
    assert [r["status"] for r in read_runs(root)] == ["failed"]
    assert check_searches(root) == []


def test_a_study_from_another_space_is_refused_with_its_name(tmp_path, tiny_base):
    root = tmp_path / "reg"
    open_study(root, "tiny", load_space(space_file(tmp_path, tiny_base)).to_dict())
    other = tmp_path / "other"
    other.mkdir()
    p = space_file(other, tiny_base)
    p.write_text(p.read_text().replace("9e-3", "8e-3"))
    with pytest.raises(trials_mod.EnsembleError, match="study 'tiny' was made from another search space"):
        open_study(root, "tiny", load_space(p).to_dict())


def test_the_sqlite_study_is_opened_by_a_second_process(tmp_path, tiny_base):
    root = tmp_path / "reg"
    study = open_study(root, "tiny", load_space(space_file(tmp_path, tiny_base)).to_dict())
    t = study.ask()
    t.suggest_float("lr", 1e-3, 9e-3)
    study.tell(t, 0.5)
    code = ("import optuna, sys; s = optuna.load_study(study_name='tiny', storage=sys.argv[1]); "
            "print(len(s.trials), s.best_value, s.trials[0].params['lr'] > 0)")
    db = root / "search" / "studies.db"
    out = subprocess.run([sys.executable, "-c", code, f"sqlite:///{db}"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "0.5", "True"]


def test_verify_finds_a_trial_without_its_run_and_a_record_of_an_unknown_trial(tmp_path, tiny_base, monkeypatch):
    root = tmp_path / "reg"
    monkeypatch.setattr(trials_mod, "mean_dev", scripted(root))
    run_search(Registry(root), load_space(space_file(tmp_path, tiny_base)), PACKAGE_SAMPLE,
               SearchOptions(trials=1, seed=0, device="cpu"))
    run = read_runs(root)[0]
    record = root / "runs" / run["run_id"] / "record.json"
    r = json.loads(record.read_text())
    r["search"]["trial"] = 7
    record.write_text(json.dumps(r))
    found = [str(p) for p in check_searches(root)]
    assert any("trial 0: runs: complete in the study, but no run record" in p for p in found), found
    assert any("names trial 7 of study 'tiny'" in p for p in found), found
    out = CliRunner().invoke(app, ["verify", "--registry", str(root)])
    assert out.exit_code == 1 and "no run record in the registry names it" in out.output


def test_cli_search_then_show_and_json(tmp_path, tiny_base):
    root = tmp_path / "reg"
    p = space_file(tmp_path, tiny_base)
    r = CliRunner().invoke(app, ["search", str(p), "--trials", "2", "--registry", str(root), "--data",
                                 str(PACKAGE_SAMPLE), "--device", "cpu", "--seed", "1", "--name", "s1"])
    assert r.exit_code == 0, r.output
    assert "trial 0 complete: best mean dev" in r.output and "trial 1 " in r.output
    assert r.output.count("epoch 1/2") == 2 and "study s1" in r.output
    shown = CliRunner().invoke(app, ["search", "show", "s1", "--registry", str(root), "--json"])
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.stdout)
    assert [t["state"] for t in doc["trials"]] == ["complete", "complete"] and doc["best"]["candidates"]
    missing = CliRunner().invoke(app, ["search", "show", "nope", "--registry", str(root)])
    assert missing.exit_code == 1 and "study 'nope': not in" in missing.output and "s1" in missing.output


def _search_args(root: Path, space: Path, trials: int = 3) -> list[str]:
    return ["search", str(space), "--trials", str(trials), "--registry", str(root), "--data", str(PACKAGE_SAMPLE),
            "--device", "cpu", "--seed", "0", "--pruner", "none", "--sampler", "random"]


@pytest.mark.parametrize("point", ["train.step#63", "search.tell#2"])
def test_a_killed_search_resumes_with_no_trial_lost_and_none_run_twice(tmp_path, tiny_base, point):
    """kill -9 in the middle of trial 1's second epoch (its first epoch's checkpoint written), or
    after trial 1's run finished but before the study was told; the rerun ends with exactly N
    trials, one run per trial, the interrupted one continued (not started again), verify clean."""
    from kill_helpers import killed_at, run_at

    root = tmp_path / "reg"
    args = _search_args(root, space_file(tmp_path, tiny_base))
    first = killed_at(point, *args)
    study = open_study(root, "tiny", None, create=False)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "RUNNING"], first.stderr
    before = {r["run_id"]: r for r in read_runs(root)}
    again = run_at(None, *args)
    assert again.returncode == 0, again.stderr
    assert "trial 1: left running by a search that was stopped; resuming it" in again.stderr
    study = open_study(root, "tiny", None, create=False)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    runs = read_runs(root)
    assert sorted(r["search"]["trial"] for r in runs) == [0, 1, 2]          # one run per trial: none twice
    assert all(r["status"] == "complete" and [e["epoch"] for e in r["epochs"]] == [1, 2] for r in runs)
    resumed = next(r for r in runs if r["search"]["trial"] == 1)
    assert resumed["run_id"] in before                                       # the same run, continued
    if point.startswith("train.step"):
        assert "resuming run" in again.stderr and "after epoch 1 of 2" in again.stderr, again.stderr
        assert before[resumed["run_id"]]["epochs"][0] == resumed["epochs"][0]   # epoch 1 not trained again
    assert study.trials[1].user_attrs["run_id"] == resumed["run_id"]
    assert sorted(c.id for c in Registry(root).candidates()) == sorted(c for r in runs for c in r["candidates"])
    out = run_at(None, "verify", "--registry", str(root))
    assert out.returncode == 0 and "0 problems" in out.stdout, out.stdout + out.stderr


def test_bench_search_spends_the_grids_epoch_budget(tmp_path, tiny_base):
    r = CliRunner().invoke(app, ["bench", "search", "--base", str(tiny_base), "--data", str(PACKAGE_SAMPLE),
                                 "--grid-runs", "2", "--epochs", "2", "--train-rows", "20", "--eval-rows", "20", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout[r.stdout.index("{"):])
    assert doc["problem"]["budget_epochs"] == 4 and doc["grid"]["epochs"] == 4 and doc["grid"]["lrs"] == [1e-5, 3e-4]
    # the search starts trials until it has trained the budget: at least it, less than one more trial's worth
    assert 4 <= doc["search"]["epochs"] < 4 + 2
    assert doc["grid"]["runs"] == 2 and doc["search"]["runs"] == doc["search"]["trials"]   # one run per trial
    assert doc["search"]["epochs"] == 2 * doc["search"]["trials"] - doc["search"]["epochs_saved"]


def test_search_views_give_the_history_and_importances_for_the_report(tmp_path, tiny_base, monkeypatch):
    from ensemble.search.study import search_views

    root = tmp_path / "reg"
    monkeypatch.setattr(trials_mod, "mean_dev", scripted(root))
    run_search(Registry(root), load_space(space_file(tmp_path, tiny_base)), PACKAGE_SAMPLE,
               SearchOptions(trials=3, seed=0, sampler="random", pruner="none", device="cpu"))
    (view,) = search_views(root)
    trials = open_study(root, "tiny", None, create=False).trials
    assert view["study"] == "tiny" and view["trials"] == 3
    assert view["points"] == [(t.number, pytest.approx(1 - t.params["lr"] * 100 + 0.002), "complete") for t in trials]
    assert set(view["importances"]) == {"lr"}
