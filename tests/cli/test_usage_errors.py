"""One style for one kind of mistake: every usage error (an unknown option or command, a value an
option does not take, whether click or the configuration's check finds it) is the red ``error:``
line, the help to read and exit 2; under ``--json`` also a JSON error object. ``ensemble -h``
documents the exit codes."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.data import PACKAGE_SAMPLE as SAMPLE


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "80"})


@pytest.mark.parametrize("args, message", [
    (("train", "--architecture", "bert"), "error: Invalid value for '--architecture' / '-a': 'bert' is not one of"),
    (("train", "--data", SAMPLE, "--lr", "-1"), "error: --lr must be > 0"),
    (("train", "--epochs", "abc"), "error: Invalid value for '--epochs'"),
    (("list", "--bogus"), "error: No such option: --bogus"),
    (("lisst",), "error: No such command 'lisst'"),
    (("train", "--device", "bogus"), "error: Invalid value for '--device': 'bogus': expected auto, cpu, cuda or cuda:N"),
    (("predict", "--device", "gpu0"), "error: Invalid value for '--device': 'gpu0': expected auto, cpu, cuda or cuda:N"),
])
def test_every_usage_error_is_one_red_line_and_exit_2(args, message):
    r = _run(*args)
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith(message), r.stderr
    assert "lists the options)" in r.stderr
    assert "Value error" not in r.output and "Usage:" not in r.output and "╭" not in r.output


@pytest.mark.parametrize("args", [("select", "--mode", "x", "--json"), ("train", "--lr", "-1", "--json"),
                                  ("list", "--bogus", "--json")])
def test_usage_errors_under_json_are_json(args):
    r = _run(*args)
    assert r.exit_code == 2
    doc = json.loads(r.stdout)
    assert doc["type"] == "UsageError" and doc["exit_code"] == 2 and doc["error"]


def test_the_exit_codes_are_documented_in_help():
    out = " ".join(_run("-h").output.split())
    assert "Exit codes:" in out
    for code in ("0 done", "1 an error the user can fix", "2 a usage error", "130 interrupted"):
        assert code in out, code
