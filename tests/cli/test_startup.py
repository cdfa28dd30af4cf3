"""Start-up: the command line loads no numpy or scipy until a command needs them (``ensemble
--version``, ``-h`` and TAB completion stay fast), and ``ensemble bench startup`` reports the start
against ``python -c pass`` measured in the same run, as a ratio."""
from __future__ import annotations

import json
import subprocess
import sys

from ensemble.bench import startup
from ensemble.cli.app import COMMANDS


def _loaded(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code + "; import sys, json; print(json.dumps(sorted("
                          "m for m in ('numpy', 'scipy', 'scipy.stats', 'pandas', 'torch') if m in sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_the_command_line_starts_without_numpy_or_scipy():
    assert _loaded("import ensemble.cli") == []
    assert _loaded("import ensemble.selection; ensemble.selection.MODE_NAMES") == []
    assert "scipy.stats" not in _loaded("from ensemble.selection import MODES")


def test_bench_startup_reports_a_ratio_against_python(monkeypatch):
    runs = []

    def fake(args):
        runs.append(args)
        return {"-c": 0.05}.get(args[0], 0.2)
    monkeypatch.setattr(startup, "_once", fake)
    result = startup.bench_startup(repeats=2)
    assert [r["command"] for r in result["rows"]] == ["python -c pass", "ensemble --version", "ensemble -h"]
    assert result["rows"][1]["ratio"] == 4.0 and len(runs) == 3 + 2 * 3   # one untimed start each, then 2 rounds
    assert result["targets"]["ensemble --version / python -c pass"] == {"value": 4.0, "target": "<= 10", "met": True}
    assert any(name == "startup" and fn.__module__ == "ensemble.cli.bench" for _, name, fn in COMMANDS)
