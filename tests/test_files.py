"""File writes keep the user's umask: 0644 under umask 022, 0600 under 077 (never mkstemp's 0600 always)."""
from __future__ import annotations

import os
import stat

import pytest

from ensemble.files import atomic_write_bytes, atomic_write_text, stage_bytes


@pytest.fixture
def umask():
    """``umask(mask)`` sets the process umask for the test; the old one is put back after."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_writes_keep_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    atomic_write_text(tmp_path / "sub" / "b.json", "{}")
    staged = stage_bytes(tmp_path, "c", b"y")
    assert [mode(tmp_path / "a.bin"), mode(tmp_path / "sub" / "b.json"), mode(staged)] == [expected] * 3


def test_atomic_write_replaces_with_the_umask_not_the_old_mode(tmp_path, umask):
    umask(0o022)
    p = tmp_path / "f"
    p.write_bytes(b"old")
    os.chmod(p, 0o600)
    atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"new" and mode(p) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["f"]   # no temp file left


def test_fault_point_kills_at_its_nth_passage_only(tmp_path):
    import subprocess
    import sys
    code = ("from ensemble.files import atomic_write_text as w\n"
            "for i in range(3):\n    w(r'%s/f%%d' %% i, 'x')\n" % tmp_path)
    env = {**__import__("os").environ, "ENSEMBLE_FAULT_AT": "atomic-write#2"}
    proc = subprocess.run([sys.executable, "-c", code], env=env)
    assert proc.returncode == -9
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["f0"]
    assert len([p for p in tmp_path.iterdir() if p.name.startswith(".f1.")]) == 1   # the staged temp file is left
