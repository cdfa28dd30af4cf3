import json

import pytest

from ensemble.errors import EnsembleError
from ensemble.registry.runs import RUN_FORMAT, damaged_runs, read_run, read_runs, run_dir, write_run


def _record(run_id, started, status="running"):
    return {"run_id": run_id, "name": "multi-sst-s0", "status": status, "started": started, "epochs": []}


def test_records_round_trip_oldest_first(tmp_path):
    write_run(tmp_path, _record("b", "2026-01-02T00:00:00"))
    write_run(tmp_path, _record("a", "2026-01-03T00:00:00", "complete"))
    got = read_runs(tmp_path)
    assert [r["run_id"] for r in got] == ["b", "a"]
    assert got[1]["status"] == "complete" and got[1]["format"] == RUN_FORMAT


def test_no_runs_folder_is_no_runs(tmp_path):
    assert read_runs(tmp_path) == []


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", "", "a b"])
def test_run_ids_must_be_plain_names(tmp_path, bad):
    with pytest.raises(EnsembleError, match="plain name"):
        run_dir(tmp_path, bad)


def test_unknown_status_refused(tmp_path):
    with pytest.raises(EnsembleError, match="status"):
        write_run(tmp_path, _record("a", "t", "done"))


def test_damaged_record_names_its_file(tmp_path):
    path = write_run(tmp_path, _record("a", "t"))
    path.write_text("{")
    with pytest.raises(EnsembleError, match=r"record.json: not valid JSON"):
        read_run(path)
    assert read_runs(tmp_path) == []                      # set aside, never blocking the other runs
    ((where, why),) = damaged_runs(tmp_path)
    assert where == path and "not valid JSON" in why
    path.write_text(json.dumps({**_record("other", "t"), "format": RUN_FORMAT}))
    with pytest.raises(EnsembleError, match="differs from its folder"):
        read_run(path)
