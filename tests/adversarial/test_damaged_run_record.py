"""One damaged run record once blocked every ``train``, ``run``, ``report`` and ``show``, and
``verify`` ignored it. Now it is set aside (the other runs go on), ``verify`` names it, and
``verify --fix-runs`` removes its folder, never a candidate."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ensemble.cli.app import app
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.registry.register import register_predictions
from ensemble.registry.runs import damaged_runs, read_runs
from ensemble.registry.store import Registry
from kill_helpers import stored
from registry_files import make_pred_dir


@pytest.mark.parametrize("text", ["{not json", '{"format": "ensemble-run/1", "run_id": "elsewhere", "epochs": []}',
                                  "[]", ""])
def test_a_damaged_record_is_set_aside_named_and_removable(tmp_path, text):
    root = tmp_path / "reg"
    register_predictions(Registry(root), make_pred_dir(SAMPLE, tmp_path / "p"), "ext", SAMPLE)
    bad = root / "runs" / "r1" / "record.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(text)
    (bad.parent / "checkpoint").mkdir()
    kept = stored(root)
    cli = CliRunner()

    assert read_runs(root) == [] and [p for p, _ in damaged_runs(root)] == [bad]
    r = cli.invoke(app, ["run", "--dry-run", "--data", str(SAMPLE), "--registry", str(root)])
    assert r.exit_code == 0, r.output                          # planning is not blocked
    r = cli.invoke(app, ["verify", "--registry", str(root)])
    assert r.exit_code == 1 and str(bad) in " ".join(r.output.split()), r.output
    r = cli.invoke(app, ["verify", "--fix-runs", "--registry", str(root)])
    assert r.exit_code == 0, r.output
    assert "removed run r1: its record was damaged" in r.output
    assert not bad.parent.exists() and stored(root) == kept     # no candidate touched
