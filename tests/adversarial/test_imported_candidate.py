"""``register PATH`` of an exported candidate once copied its ``training`` field unchecked and sealed
it; ``verify`` passed it, then ``list``, ``train`` and ``run`` crashed. Now everything imported is
checked as the tool writes it: a bad field is refused naming the file and the field, and nothing is
added. A sound export registers, and ``verify`` and ``list`` read it."""
from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from ensemble.cli.app import app
from ensemble.registry.store import Registry
from fixtures_torch import tiny_base, trained  # noqa: F401

BAD = [
    ("training", "not an object", "field training 'not an object': expected an object"),
    ("training.config", [], "field training.config []: expected an object of `train` options"),
    ("training.config.lr", "fast", "field training.config.lr 'fast': expected a number"),
    ("training.config.epochs", 0, "field training.config: --epochs must be >= 1"),
    ("training.epoch", "2", "field training.epoch '2': expected a positive integer"),
    ("training.run_id", "../../elsewhere", "field training.run_id '../../elsewhere': expected a plain run id"),
    ("training.best_for", "sst", "field training.best_for 'sst': expected a list of task names"),
    ("training.run_complete", "yes", "field training.run_complete 'yes': expected true or false"),
    ("training.extra", 1, "field training: unknown field 'extra'"),
    ("name", ["x"], "field name ['x']: expected a non-empty string"),
]


def exported(trained, tmp_path):
    src = Registry(trained["registry"]).candidates()[0]
    return shutil.copytree(src.path, tmp_path / "exported")


@pytest.mark.parametrize("field, value, said", BAD, ids=[b[0] + "-" + type(b[1]).__name__ for b in BAD])
def test_a_bad_imported_field_is_refused_naming_it(trained, tmp_path, field, value, said):
    export = exported(trained, tmp_path)
    f = export / "candidate.json"
    doc = json.loads(f.read_text())
    *parents, last = field.split(".")
    at = doc
    for p in parents:
        at = at[p]
    at[last] = value
    f.write_text(json.dumps(doc))
    root = tmp_path / "reg"
    r = CliRunner().invoke(app, ["register", str(export), "--data", str(trained["data"]), "--registry", str(root),
                                 "--device", "cpu"])
    text = " ".join(r.output.split())
    assert r.exit_code == 1 and "Traceback" not in text, r.output
    # named by the manifest's typed model (documents) where its types are wrong, else by the training check
    assert f"{f}: {said}" in text or f"{f}: {said.split()[1].rstrip(':')}" in text
    assert not Registry(root).exists or Registry(root).candidates() == []


def test_a_sound_export_registers_and_is_read_by_every_command(trained, tmp_path):
    export = exported(trained, tmp_path)
    root = tmp_path / "reg"
    cli = CliRunner()
    r = cli.invoke(app, ["register", str(export), "--data", str(trained["data"]), "--registry", str(root),
                         "--device", "cpu"])
    assert r.exit_code == 0, r.output
    for args in (["verify"], ["list"], ["list", "--json"]):
        r = cli.invoke(app, [*args, "--registry", str(root)])
        assert r.exit_code == 0, r.output
