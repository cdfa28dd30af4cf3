"""``ensemble bench grid``: one small grid (tiny random models on the data) on the local engine and
on Ray with 1 and 2 (or more) workers, in one run.

Each system trains the same configurations into a fresh registry. The local engine is
``ensemble run --engine local``'s loop (:func:`ensemble.runner.train_local`) in this process, one
thread. Each Ray instance is started on the loopback address, with ``workers`` CPUs, and its
workers loaded with the training code before the clock starts (``start-up``, reported apart with
the progress actor's start); then the grid runs through :func:`ensemble.scale.driver.train_grid`,
one thread a run. Reported: wall time, runs per hour, speed-up over local, and Ray's overhead per
run: the worker slot time not spent training, ``(workers x wall - sum of training time) / runs``
(scheduling, the data written out, shipping a candidate back, registering it, idle slots at the
end), and its measured parts. Each Ray candidate's predictions are checked to be those the local
engine made for the same configuration and seed.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ..modeling.bases import make_random_base
from ..errors import EnsembleError
from ..scale.driver import LOOPBACK, RayOptions, require_ray, train_grid
from ..scale.worker import warm
from ..registry.store import Registry
from ..runner import plan, train_local
from ..training.config import TrainConfig
from .machine import load_average


def bench_configs(base: str, runs: int, epochs: int) -> list[TrainConfig]:
    """``runs`` configurations of the tiny base: seeds 0, 1, ...; architectures multi and cerberus-1 in turn;
    at most 400 training rows a task (the packaged sample has fewer)."""
    return [TrainConfig(base=base, architecture="multi" if i % 2 == 0 else "cerberus", task_layers=i % 2, seed=i,
                        epochs=epochs, batch_size=16, lr=1e-3, limit=400, precision="fp32") for i in range(runs)]


def _predictions(reg: Registry) -> dict[str, dict[str, str]]:
    """fingerprint -> {prediction file: sha256} of the registry's candidates (one per run here)."""
    out: dict[str, dict[str, str]] = {}
    for c in reg.candidates():
        files = {k: v.sha256 for k, v in c.files.items() if k.startswith("predictions/")}
        out.setdefault(c.fingerprint, {}).update({f"{c.epoch}:{k}": v for k, v in files.items()})
    return out


def _local(root: Path, configs: list[TrainConfig], data_dir: Path) -> tuple[dict[str, Any], Registry]:
    reg = Registry(root / "local")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        train_local(reg, configs, data_dir, "cpu")
        wall = time.perf_counter() - t0
    finally:
        torch.set_num_threads(old)
    return {"system": "local engine", "workers": 1, "wall_seconds": wall, "startup_seconds": 0.0}, reg


def _ray(root: Path, configs: list[TrainConfig], data_dir: Path, workers: int) -> tuple[dict[str, Any], Registry]:
    """The grid on a fresh local Ray instance with ``workers`` CPUs (started and shut down here)."""
    ray = require_ray(local=True)   # every Ray process on 127.0.0.1
    if ray.is_initialized():
        raise EnsembleError("bench grid starts Ray instances of its own; this process is connected to Ray already")
    reg = Registry(root / f"ray-{workers}")
    t0 = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             _node_ip_address=LOOPBACK,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}})
    try:
        pids = ray.get([ray.remote(num_cpus=1)(warm).remote(1.0) for _ in range(workers)])
        startup = time.perf_counter() - t0
        todo = [(r["fingerprint"], r["config"]) for r in plan(reg, configs, data_dir)]
        summary = train_grid(reg, todo, data_dir, RayOptions(cpus_per_run=1, device="cpu", max_retries=0,
                                                                      poll_seconds=1.0))   # events: progress only
    finally:
        ray.shutdown()
    wall = summary["runs_seconds"]
    runs = summary["runs"]
    trained = sum(r["times"].get("train", 0.0) for r in runs)
    mean = (lambda xs: sum(xs) / len(xs) if xs else None)
    return {"system": f"Ray, {workers} worker{'s' if workers > 1 else ''}", "workers": workers, "wall_seconds": wall,
            "startup_seconds": startup + summary["startup_seconds"], "warm_worker_processes": len(set(pids)),
            "failed": summary["failed"],
            "overhead_per_run_seconds": (workers * wall - trained) / len(runs),
            "ship_and_register_seconds": mean([r["times"]["pack"] + r["times"]["landed"] - r["times"]["returned"]
                                               for r in runs if "landed" in r["times"]]),
            "worker_setup_seconds": mean([r["times"]["setup"] for r in runs if "setup" in r["times"]]),
            "training_seconds_per_run": trained / len(runs)}, reg


def bench_grid(data_dir: Path, runs: int = 4, epochs: int = 2, workers: tuple[int, ...] = (1, 2),
               hidden: int = 64, layers: int = 2) -> dict[str, Any]:
    """The same grid on the local engine and on Ray with each of ``workers`` workers (see the module)."""
    root = Path(tempfile.mkdtemp(prefix="ensemble-bench-grid-"))
    try:
        base = str(make_random_base(root / "base", layers=layers, hidden=hidden, heads=2))
        configs = bench_configs(base, runs, epochs)
        load_before = load_average()
        rows, regs = [], []
        for system in ("local", *workers):
            row, reg = _local(root, configs, data_dir) if system == "local" else _ray(root, configs, data_dir, system)
            rows.append(row)
            regs.append(reg)
        local_wall, local_preds = rows[0]["wall_seconds"], _predictions(regs[0])
        for row, reg in zip(rows, regs):
            row["runs_per_hour"] = runs / row["wall_seconds"] * 3600
            row["speed_up"] = local_wall / row["wall_seconds"]
            row["same_predictions_as_local"] = _predictions(reg) == local_preds
        keys = list(dict.fromkeys(k for r in rows for k in r))
        rows = [{k: r.get(k) for k in keys} for r in rows]   # one set of keys for every system
        best = max(rows[1:], key=lambda r: r["workers"], default=None)
        targets = {} if best is None or best["workers"] < 2 else {
            f"Ray with {best['workers']} workers >= 1.6x the local engine":
                {"value": best["speed_up"], "target": 1.6, "met": best["speed_up"] >= 1.6}}
        return {"title": f"bench grid: {runs} runs of a random {layers}-layer, hidden-{hidden} BERT, {epochs} epochs, "
                         f"data {data_dir}", "rows": rows, "targets": targets,
                "grid": {"runs": runs, "epochs": epochs, "configs": [c.run_name for c in configs]},
                "machine": {"cpu_count": os.cpu_count(), "load_average_before": load_before,
                            "load_average_after": load_average(), "torch": torch.__version__,
                            "ray": require_ray().__version__}}
    finally:
        shutil.rmtree(root, ignore_errors=True)
