"""ensemble.workflow: select says why nothing could be selected, leaves out candidates whose cached
predictions are damaged, and predict names the members an ensemble lost."""
from __future__ import annotations

import shutil

import pytest

from ensemble import workflow
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.errors import EnsembleError
from ensemble.register import register_predictions
from ensemble.registry import Registry
from registry_files import make_pred_dir


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
    assert (f"  candidate {a.id} has stale cached predictions (sts-dev (sts-dev.csv changed)): left out; "
            f"`ensemble register --refresh --data {data}` recomputes them\n") in str(e.value)


def test_a_damaged_prediction_file_leaves_its_candidate_out(two):
    reg, (a, b) = two
    f = b.path / "predictions" / "sst-dev.csv"
    lines = f.read_text().splitlines(keepends=True)
    lines[3] = lines[3].split(",")[0] + ",oops\n"
    f.write_text("".join(lines))
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
    reg.remove(gone)
    tasks = ", ".join(t for t, v in report.tasks.items() if gone in v["weights"])
    with pytest.raises(EnsembleError) as e:
        workflow.predict(reg, SAMPLE, tmp_path / "out", "mine")
    assert str(e.value) == (f"ensemble mine lost member {gone} ({tasks}): removed from {reg.root}; run "
                            "`ensemble select` again to choose from the candidates left")
    assert not (tmp_path / "out").exists()
