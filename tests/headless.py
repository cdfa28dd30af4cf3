"""Headless Chromium for the tests that look at a page in a real browser (the report's page, the
documentation site): Debian's ``chromium``, which .ci/run installs. A test that needs it skips,
saying why, where no binary exists. Every browser process runs in its own process group, killed
when the call ends."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions"]


def chromium(tmp: Path, *args: str) -> str:
    """Run headless Chromium with its own profile in ``tmp``; its whole process group is killed afterwards."""
    if CHROMIUM is None:
        pytest.skip("no chromium binary (Debian's `chromium` package; .ci/run installs it)")
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True, text=True)
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return out
