"""Every reader and validator, for any bytes: either rows (or the checked document) or the project's
one exception, EnsembleError, naming the file (issue 13). Never another exception."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given

from ensemble.registry.candidate import MANIFEST, try_read, verify_folder
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.data import read_file, read_split
from ensemble.registry.saved import read_ensemble_file
from ensemble.errors import EnsembleError
from ensemble.predfile import read_predictions
from ensemble.registry.runs import RUN_FORMAT, read_run
from ensemble.tasks import TASKS
from ensemble.leaderboard.validate import check_folder
from registry_files import make_pred_dir
from property_strategies import PROPERTY, any_bytes, any_json_bytes

WORK = Path(tempfile.mkdtemp(prefix="ensemble-properties-"))   # one folder rewritten by every example
COURSE = [(t, s) for t in TASKS for s in ("train", "dev", "test")]


@pytest.fixture(scope="module", autouse=True)
def _clean():
    yield
    shutil.rmtree(WORK, ignore_errors=True)


def refused_naming(fn, path: Path | str):
    """``fn()``'s result, or None when it raised EnsembleError naming ``path`` (a file, or a candidate id)."""
    try:
        return fn()
    except EnsembleError as e:
        assert str(path) in str(e), str(e)
        return None


def data_folder(task: str, split: str, raw: bytes) -> tuple[Path, Path]:
    folder = WORK / f"data-{task}-{split}"
    if not folder.exists():
        shutil.copytree(SAMPLE, folder)
    path = folder / TASKS[task].file_name(split)
    path.write_bytes(raw)
    return folder, path


@pytest.mark.parametrize("task, split", COURSE, ids=[f"{t}-{s}" for t, s in COURSE])
def test_course_files(task, split):
    valid = (SAMPLE / TASKS[task].file_name(split)).read_bytes()

    @PROPERTY
    @given(any_bytes(valid))
    def check(raw):
        folder, path = data_folder(task, split, raw)
        out = refused_naming(lambda: read_split(folder, task, split), path)
        if out is not None:
            assert all(isinstance(e.id, str) and e.id for e in out.examples)
            if split != "test":
                assert out.examples and all(e.label is not None for e in out.examples)
        refused_naming(lambda: read_file(path, task), path)   # predict --input's reader
    check()


@pytest.mark.parametrize("task", list(TASKS))
def test_imported_prediction_files(task, tmp_path_factory):
    src = make_pred_dir(SAMPLE, tmp_path_factory.mktemp("p"), tasks=(task,))
    valid = (src / f"{task}-dev.csv").read_bytes()

    @PROPERTY
    @given(any_bytes(valid))
    def check(raw):
        path = WORK / f"{task}-dev.csv"
        path.write_bytes(raw)
        out = refused_naming(lambda: read_predictions(path, task), path)
        if out is not None:
            ids, values = out
            assert len(ids) == len(values) == len(set(ids)) and (values == values).all()
    check()


def test_leaderboard_folders():
    folder = WORK / "leaderboard"
    folder.mkdir(exist_ok=True)
    valid = b"id,Predicted_Sentiment\n" + b"".join(f"x{i} , 1 \n".encode() for i in range(3))

    @PROPERTY
    @given(any_bytes(valid))
    def check(raw):
        path = folder / "sst-dev-output.csv"
        path.write_bytes(raw)
        problems = refused_naming(lambda: check_folder(folder, SAMPLE, ["sst"], ["dev"])[0], path)
        assert problems is None or all(str(folder) in p.file or str(path) in str(p) for p in problems) or problems == []
    check()


VALID_ENSEMBLE = {"name": "e", "mode": "caruana", "tasks": {"sst": {"members": ["a1"], "weights": {"a1": 1},
                                                                    "dev_score": 0.5}}, "summary": []}


@PROPERTY
@given(any_json_bytes(VALID_ENSEMBLE))
def test_saved_ensemble_files(raw):
    path = WORK / "e.json"
    path.write_bytes(raw)
    doc = refused_naming(lambda: read_ensemble_file(path), path)
    if doc is not None:
        for entry in doc["tasks"].values():
            assert all(w > 0 for w in entry["weights"].values())


VALID_MANIFEST = {"id": "c1", "name": "x", "kind": "predictions", "tasks": ["sst"], "format": "ensemble-candidate/1",
                  "files": {"predictions/sst-dev.csv": {"sha256": "s", "size": 3}},
                  "predictions": {"sst": {"dev": {"file": "predictions/sst-dev.csv", "rows": 1}}},
                  "metrics": {"sst": {"dev": 0.5}}}


@PROPERTY
@given(any_json_bytes(VALID_MANIFEST))
def test_candidate_manifests(raw):
    folder = WORK / "c1"
    (folder / "predictions").mkdir(parents=True, exist_ok=True)
    (folder / "predictions" / "sst-dev.csv").write_bytes(b"abc")
    (folder / MANIFEST).write_bytes(raw)
    cand, problem = try_read(folder)   # never raises: a damaged folder is a Problem
    assert (cand is None) != (problem is None)
    if cand is not None:
        cand.tasks, cand.name, cand.kind, cand.dev_metric("sst"), cand.has_predictions("sst", "dev")
        refused_naming(lambda: cand.predictions("sst", "dev"), "c1")   # the file, or "candidate c1 has no ..."
    verify_folder(folder)


VALID_RUN = {"format": RUN_FORMAT, "run_id": "r1", "epochs": []}


@PROPERTY
@given(any_json_bytes(VALID_RUN))
def test_run_records(raw):
    path = WORK / "r1" / "run.json"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(raw)
    refused_naming(lambda: read_run(path), path)
