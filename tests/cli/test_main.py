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
