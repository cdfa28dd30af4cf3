"""``bench startup``: how long ``ensemble --version`` (and ``-h``) takes to start, against ``python -c
pass`` measured in the same run, as a ratio (the machine's speed cancels out)."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from typing import Any

from .targets import target

STARTUP_TARGET = 10.0   # ensemble --version at most this many times python -c pass
COMMANDS = {"python -c pass": ["-c", "pass"], "ensemble --version": ["-m", "ensemble", "--version"],
            "ensemble -h": ["-m", "ensemble", "-h"]}


def _once(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   env={**os.environ, "COLUMNS": "80"})
    return time.perf_counter() - start


def bench_startup(repeats: int = 5) -> dict[str, Any]:
    """Each command once untimed, then ``repeats`` times, interleaved; the best and median wall seconds and the ratio of
    the best to ``python -c pass``'s best."""
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for args in COMMANDS.values():   # a first start, untimed: the files' bytecode is written, the disk cache warm
        _once(args)
    for _ in range(repeats):
        for name, args in COMMANDS.items():
            times[name].append(_once(args))
    base = min(times["python -c pass"])
    rows = [{"command": name, "best_s": min(t), "median_s": statistics.median(t), "ratio": min(t) / base}
            for name, t in times.items()]
    version = rows[1]["ratio"]
    return {"title": f"start-up: best of {repeats}, against python -c pass in the same run", "rows": rows,
            "targets": {"ensemble --version / python -c pass": target(version, STARTUP_TARGET, at_least=False)}}
