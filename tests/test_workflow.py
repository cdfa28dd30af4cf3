"""ensemble.workflow: select says why nothing could be selected, leaves out candidates whose cached
predictions are damaged or rewritten after they were stored, and predict names the members an
ensemble lost and refuses members' rewritten prediction files; predict --input refuses tampered
weights."""
from __future__ import annotations

import json
import shutil

import pytest

from ensemble import workflow
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.errors import EnsembleError
from ensemble.files import file_sha256
from ensemble.registry.register import register_predictions
from ensemble.registry.store import Registry
from fixtures_torch import copy_registry, tiny_base, torch_one_thread, trained  # noqa: F401
from registry_files import flip_last_byte, make_pred_dir, tamper_refusal


@pytest.fixture
def two(tmp_path):
    """A registry of two imported candidates over the packaged sample: (registry, them in its order)."""
    reg = Registry(tmp_path / "reg")
    for i in range(2):
        register_predictions(reg, make_pred_dir(SAMPLE, tmp_path / f"p{i}", seed=i), f"ext{i}", SAMPLE)
    return reg, reg.candidates()


def test_select_on_other_data_names_the_stale_candidates_and_the_fix(two, tmp_path):
    reg, (a, b) = two
    data = shutil.copytree(SAMPLE, tmp_path / "data")
    sts = data / "sts-dev.csv"
    sts.write_text(sts.read_text().replace("pasta.\t5.0", "pasta.\t4.5", 1))
    with pytest.raises(EnsembleError) as e:
        workflow.select(reg, data, save=False)
    fix = "re-export them from the code that made them and register them again"
    assert str(e.value) == (
        "no task has candidates with dev predictions; nothing to select\n"
        f"  candidate {a.id} has stale cached predictions (sts-dev (sts-dev.csv changed)): left out; {fix}\n"
        f"  candidate {b.id} has stale cached predictions (sts-dev (sts-dev.csv changed)): left out; {fix}")
    reg.update_manifest(a.id, lambda m: m.update(kind="model"))       # a model's predictions can be recomputed
    with pytest.raises(EnsembleError) as e:
        workflow.select(reg, data, save=False)
    assert (f"  candidate {a.id} has stale cached predictions (sts-dev (sts-dev.csv changed)): left out; they were "
            f"made from other versions of these files than those in {data}: pass the --data they were made from, or, "
            "if the course files were updated on purpose, `ensemble register --refresh` recomputes them (it asks "
            "first)\n") in str(e.value)
    assert "--refresh --data" not in str(e.value)   # never advice to move the registry onto other data


def test_a_damaged_prediction_file_leaves_its_candidate_out(two):
    reg, (a, b) = two
    f = b.path / "predictions" / "sst-dev.csv"
    lines = f.read_text().splitlines(keepends=True)
    lines[3] = lines[3].split(",")[0] + ",oops\n"
    f.write_text("".join(lines))
    sha = file_sha256(f)                          # recorded as stored: the rows themselves are refused
    reg.update_manifest(b.id, lambda m: m["files"]["predictions/sst-dev.csv"].update(sha256=sha))
    report = workflow.select(reg, SAMPLE, save=False)
    assert list(report.tasks) == ["sst", "para", "sts"]
    assert b.id not in report.tasks["sst"]["weights"] and a.id in report.tasks["sst"]["weights"]
    damaged = [n for n in report.notes if "damaged" in n]
    assert len(damaged) == 1 and damaged[0].startswith(f"sst: candidate {b.id} left out: its cached dev "
                                                       f"predictions are damaged ({f}:4: ")
    assert damaged[0].endswith("; `ensemble verify` checks every stored file")


def test_predict_names_the_members_an_ensemble_lost(two, tmp_path):
    reg, _ = two
    report = workflow.select(reg, SAMPLE, mode="greedy", name="mine")
    members = sorted({m for t in report.tasks.values() for m in t["weights"]})
    gone = members[0]
    reg.remove(gone, allow=["mine"])        # the user agreed to break "mine"
    tasks = ", ".join(t for t, v in report.tasks.items() if gone in v["weights"])
    with pytest.raises(EnsembleError) as e:
        workflow.predict(reg, SAMPLE, tmp_path / "out", "mine")
    assert str(e.value) == (f"ensemble mine lost member {gone} ({tasks}): removed from {reg.root}; run "
                            "`ensemble select` again to choose from the candidates left")
    assert not (tmp_path / "out").exists()


def _rewrite(f):
    """Rewrite a cached sst prediction file with other, still valid rows (every row's p0 and p4
    swapped); returns its old and new sha256."""
    old = file_sha256(f)
    lines = f.read_text().splitlines(keepends=True)
    for n in range(1, len(lines)):
        i, p0, p1, p2, p3, p4 = lines[n].strip().split(",")
        lines[n] = ",".join((i, p4, p1, p2, p3, p0)) + "\n"
    f.write_text("".join(lines))
    return old, file_sha256(f)


def test_select_leaves_out_a_candidate_whose_prediction_file_was_rewritten(two):
    reg, (a, b) = two
    f = b.path / "predictions" / "sst-dev.csv"
    old, new = _rewrite(f)
    report = workflow.select(reg, SAMPLE, save=False)
    assert b.id not in report.tasks["sst"]["weights"] and a.id in report.tasks["sst"]["weights"]
    assert [n for n in report.notes if "damaged" in n] == [
        f"sst: candidate {b.id} left out: its cached dev predictions are damaged ({tamper_refusal(f, old, new)}); "
        "`ensemble verify` checks every stored file"]


def test_predict_refuses_a_member_prediction_file_rewritten_after_select(two, tmp_path):
    reg, _ = two
    report = workflow.select(reg, SAMPLE, mode="greedy", name="mine")
    member = sorted(report.tasks["sst"]["weights"])[0]
    f = reg.get(member).path / "predictions" / "sst-dev.csv"
    old, new = _rewrite(f)
    with pytest.raises(EnsembleError) as e:
        workflow.predict(reg, SAMPLE, tmp_path / "out", "mine")
    assert str(e.value) == tamper_refusal(f, old, new)
    assert not (tmp_path / "out").exists()


def test_predict_input_refuses_weights_changed_after_they_were_stored(trained, tmp_path):
    reg = Registry(copy_registry(trained["registry"], tmp_path / "reg"))
    workflow.select(reg, trained["data"], tasks=["sst"], mode="greedy", name="mine")
    member = next(iter(reg.load_ensemble("mine")["tasks"]["sst"]["members"]))
    w = reg.get(member).path / "model" / "model.safetensors"
    old, new = flip_last_byte(w)
    with pytest.raises(EnsembleError) as e:
        workflow.predict_input(reg, trained["data"] / "ids-sst-dev.csv", "sst", tmp_path / "out", "mine", device="cpu")
    assert str(e.value) == tamper_refusal(w, old, new)
    assert not (tmp_path / "out").exists()
    assert [(p.candidate, p.file, p.message) for p in reg.verify()[1]] == [
        (member, "model/model.safetensors", "sha256 mismatch (content changed)")]


def test_predict_with_a_missing_course_file_writes_nothing(two, tmp_path):
    reg, _ = two
    workflow.select(reg, SAMPLE, mode="greedy", name="mine", repeats=0)
    data = shutil.copytree(SAMPLE, tmp_path / "data")
    (data / "quora-test-student.csv").unlink()
    with pytest.raises(EnsembleError) as e:
        workflow.predict(reg, data, tmp_path / "out", "mine")
    assert str(e.value) == (f"course file not found: para test: {data / 'quora-test-student.csv'}; nothing written "
                            f"(expected the course's files in {data}: --data)")
    assert not (tmp_path / "out").exists()


def test_predict_of_an_ensemble_without_a_task_says_which_files_it_did_not_write(two, tmp_path):
    reg, _ = two
    workflow.select(reg, SAMPLE, tasks=["sst", "sts"], mode="greedy", name="mine", repeats=0)
    result = workflow.predict(reg, SAMPLE, tmp_path / "out", "mine")
    assert [p.split("/")[-1] for p in result["written"]] == ["sst-dev-output.csv", "sst-test-output.csv",
                                                             "sts-dev-output.csv", "sts-test-output.csv"]
    assert result["not_written"] == ["para-dev-output.csv", "para-test-output.csv"]
    assert result["notes"] == [f"ensemble mine has no members for para: para-dev-output.csv, para-test-output.csv not "
                               f"written, so `submit` will refuse {tmp_path / 'out'} until they are there (select "
                               "with candidates for every task)"]


@pytest.mark.parametrize("tasks, shown", [({"nli": {"weights": {"x": 1}}}, ".nli (a key): expected 'sst', 'para' or 'sts'"),
                                          (None, ": missing (a required field)"),
                                          ({}, ": expected at least 1 entries, got {}")])
def test_predict_of_a_hand_edited_ensemble_without_known_tasks(two, tmp_path, tasks, shown):
    reg, _ = two
    workflow.select(reg, SAMPLE, mode="greedy", name="mine", repeats=0)
    path = reg.ensembles_dir / "mine.json"
    doc = {k: v for k, v in json.loads(path.read_text()).items() if k != "tasks"}
    path.write_text(json.dumps({**doc, **({} if tasks is None else {"tasks": tasks})}))
    with pytest.raises(EnsembleError) as e:
        workflow.predict(reg, SAMPLE, tmp_path / "out", "mine")
    assert str(e.value).startswith(f"{path}: tasks{shown}"), str(e.value)
    assert not (tmp_path / "out").exists()
