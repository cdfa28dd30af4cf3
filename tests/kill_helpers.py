"""Helpers of the kill tests (tests/adversarial/test_kill_store.py, tests/registry/test_store.py): run a
command in a subprocess that SIGKILLs itself at a named fault point (ensemble.files.fault_point),
and snapshots of what a registry stores, to show that nothing was lost."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KILLED = -signal.SIGKILL


def run_at(point: str | None, *args: str, code: str | None = None, timeout: int = 180) -> subprocess.CompletedProcess:
    """``python -m ensemble ARGS`` (or ``python -c CODE ARGS``) with ``ENSEMBLE_FAULT_AT=point``."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", COLUMNS="200")
    env.pop("ENSEMBLE_FAULT_AT", None)
    if point:
        env["ENSEMBLE_FAULT_AT"] = point
    cmd = [sys.executable, *(("-c", code) if code is not None else ("-m", "ensemble")), *map(str, args)]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def killed_at(point: str, *args: str, code: str | None = None) -> subprocess.CompletedProcess:
    """:func:`run_at`, asserting that the process died at the point (a point never reached fails)."""
    r = run_at(point, *args, code=code)
    assert r.returncode == KILLED, f"not killed at {point} (exit {r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


def stored(root: Path) -> dict[str, bytes]:
    """Every file of the registry's candidates and saved ensembles with its bytes (what must not be lost)."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for d in ("candidates", "ensembles") for p in sorted((root / d).rglob("*")) if p.is_file()}


def housekeeping(root: Path) -> list[str]:
    """What is left in the registry's .staging and .trash, and hidden temp files among the stored ones."""
    left = [p.relative_to(root).as_posix() for d in (".staging", ".trash") for p in (root / d).iterdir()]
    return left + [k for k in stored(root) if Path(k).name.endswith(".tmp")]
