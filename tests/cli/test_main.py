"""``python -m ensemble``: the console script's command line, with its version."""
from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version


def test_python_m_ensemble_is_the_cli():
    r = subprocess.run([sys.executable, "-m", "ensemble", "--version"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"ensemble {version('ensemble')}\n"
    r = subprocess.run([sys.executable, "-m", "ensemble", "-h"], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "ensembles" in r.stdout and "select" in r.stdout


def _closed_pipe(*args: str) -> subprocess.CompletedProcess:
    """``ensemble ARGS | head -0``: the reader closes the pipe before anything is written."""
    p = subprocess.Popen([sys.executable, "-m", "ensemble", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()
    stderr = p.stderr.read().decode()
    return subprocess.CompletedProcess(args, p.wait(), "", stderr)


def test_a_closed_pipe_is_a_quiet_normal_end(registry_with_imports):
    for args in (("list", "--registry", str(registry_with_imports)),   # rich's table: flushed inside the command
                 ("list", "--csv", "--registry", str(registry_with_imports)),   # buffered: flushed at the end
                 ("-h",)):
        r = _closed_pipe(*args)
        assert (r.returncode, r.stderr) == (0, ""), args
