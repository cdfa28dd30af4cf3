"""What reaches the terminal: raw escape codes in a name are shown as ``\\x1b``, never sent; an
error never echoes a 10 MB field whole; and bad ids in a course file are found before training
starts, never after an epoch."""
from __future__ import annotations

import shutil

from typer.testing import CliRunner

from ensemble.cli.app import app
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.registry.register import register_predictions
from ensemble.registry.store import Registry
from fixtures_torch import tiny_base  # noqa: F401
from kill_helpers import run_at
from registry_files import make_pred_dir

NASTY = "\x1b[31mred\x1b]0;pwned\x07\x9b2J\rover"


def test_escape_codes_in_a_name_never_reach_the_terminal(tmp_path):
    root = tmp_path / "reg"
    c = register_predictions(Registry(root), make_pred_dir(SAMPLE, tmp_path / "p"), NASTY, SAMPLE)
    cli = CliRunner()
    for args in (["list"], ["show", c.id], ["compare", c.id, c.id]):
        r = cli.invoke(app, [*args, "--registry", str(root)], env={"COLUMNS": "300"})
        assert r.exit_code == 0, r.output
        for raw in ("\x1b", "\x07", "\x9b", "\r"):
            assert raw not in r.output, (args, r.output)
        assert "\\x1b[31mred" in r.output
    r = cli.invoke(app, ["remove", "--registry", str(root), NASTY])        # an error echoing it
    assert r.exit_code == 1 and "\x1b" not in r.output


def test_an_error_never_echoes_a_huge_field(tmp_path):
    huge = "x" * 10_000_000
    for args, code in ((["run", "--dry-run", "--preset", huge], 2),                  # a usage error
                       (["run", "--dry-run", "--grid", str(tmp_path / huge)], 1),  # an EnsembleError
                       (["show", huge, "--registry", str(tmp_path)], 1)):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == code, r.output[:500]
        assert len(r.output) < 20_000 and "Traceback" not in r.output and "unexpectedly" not in r.output, r.output[:500]


def test_bad_ids_in_a_course_file_are_found_before_the_first_epoch(tiny_base, tmp_path):
    data = shutil.copytree(SAMPLE, tmp_path / "data")
    dev = data / "ids-sst-dev.csv"
    lines = dev.read_text().splitlines(keepends=True)
    first = lines[1].split("\t")
    first[1] = "bad,id"
    lines[1] = "\t".join(first)
    dev.write_text("".join(lines))
    r = run_at(None, "train", "--data", data, "--base", tiny_base, "--epochs", "1", "--batch-size", "8",
               "--device", "cpu", "--registry", tmp_path / "reg")
    said = " ".join(r.stderr.split())
    assert r.returncode == 1, said
    assert "ids-sst-dev.csv: row 1: id 'bad,id' is empty or holds a comma" in said
    assert "epoch 1/" not in said
