"""``ensemble bench search``: the same budget of training epochs spent by a grid and by the search,
on a small real problem, in one run.

The problem: the course files cut to ``train_rows`` training rows a task (``limit``) and the first
``eval_rows`` dev and test rows (a copy in a scratch folder), the MiniLM stand-in, ``epochs``
epochs a run. The grid is the report's way: ``grid_runs`` learning rates spaced evenly on a log
scale over the space's ``lr`` range, every other option at its default, each trained every epoch;
its epochs are the budget. The search (:func:`ensemble.search.trials.run_search`, TPE and the
median pruner) starts trials until it has trained as many epochs. Each library goes into a fresh
registry; reported for each: the best mean dev score of any epoch, the mean dev score of the
ensemble built from it (``ensemble select``'s default mode), epochs trained, trials pruned and the
epochs pruning saved.
"""
from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import EnsembleError
from ..progress import NULL, Progress
from ..registry.keeper import train_into
from ..registry.runs import read_runs
from ..registry.store import Registry
from ..search.space import load_space
from ..search.trials import SearchOptions, mean_dev, run_search
from ..tasks import TASK_NAMES, TASKS
from ..training.config import TrainConfig
from ..workflow import select


def small_problem(data_dir: Path, out: Path, eval_rows: int) -> Path:
    """The course files with dev and test cut to their first ``eval_rows`` rows (train kept whole:
    the runs' ``limit`` cuts it)."""
    out.mkdir(parents=True, exist_ok=True)
    for t in TASK_NAMES:
        for split in ("train", "dev", "test"):
            src = Path(data_dir) / TASKS[t].file_name(split)
            if not src.is_file():
                raise EnsembleError(f"{src}: missing; expected the course's {t} {split} file")
            lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
            (out / src.name).write_text("".join(lines if split == "train" else lines[: eval_rows + 1]),
                                        encoding="utf-8")
    return out


def grid_configs(space, runs: int) -> list[TrainConfig]:
    """``runs`` learning rates evenly on a log scale over the space's lr range, the rest at defaults."""
    d = space.dists.get("lr")
    if d is None or d.kind == "choice":
        raise EnsembleError(f"{space.path}: [space] lr: expected a log_uniform or uniform range for the grid")
    low, high = d.values
    lrs = [low * (high / low) ** (i / max(runs - 1, 1)) for i in range(runs)]
    return [TrainConfig(**{**space.defaults, "lr": lr}) for lr in lrs]


def library(reg: Registry, data_dir: Path) -> dict[str, Any]:
    """A library's best mean dev of any epoch and the mean dev of the ensemble selected from it."""
    records = read_runs(reg.root)
    best = max((mean_dev(e) for r in records for e in r["epochs"]), default=None)
    if best is None:
        raise EnsembleError(f"{reg.root}: no run trained an epoch (every trial failed?); nothing to compare")
    report = select(reg, data_dir, save=False)
    ens = next(r for r in report.summary if isinstance(r.get("heldout"), dict))   # the system select saved
    return {"runs": len(records), "candidates": len(reg.candidates()), "best_dev": best,
            "ensemble_dev": ens["mean_dev"], "ensemble": ens["system"],
            "epochs": sum(len(r["epochs"]) for r in records),
            "pruned": sum(r["status"] == "pruned" for r in records)}


def bench_search(data_dir: Path, base: str = "minilm", space: str = "quick", grid_runs: int = 4, epochs: int = 3,
                 train_rows: int = 300, eval_rows: int = 300, seed: int = 0, device: str | None = "cpu",
                 progress: Progress = NULL) -> dict[str, Any]:
    spc = load_space(space, {"base": base, "epochs": epochs, "limit": train_rows})
    configs = grid_configs(spc, grid_runs)
    budget = len(configs) * epochs
    with tempfile.TemporaryDirectory(prefix="ensemble-bench-search-") as tmp:
        data = small_problem(data_dir, Path(tmp) / "data", eval_rows)
        t0 = time.perf_counter()
        grid_reg = Registry(Path(tmp) / "grid")
        for cfg in configs:
            progress.note(f"grid: lr {cfg.lr:.3g}")
            train_into(grid_reg, cfg, data, device=device, progress=progress)
        t1 = time.perf_counter()
        search_reg = Registry(Path(tmp) / "search")
        opts = SearchOptions(trials=10 * budget, name="bench", seed=seed, device=device, max_epochs=budget)
        found = run_search(search_reg, spc, data, opts, progress)
        t2 = time.perf_counter()
        grid, search = library(grid_reg, data), library(search_reg, data)
    grid["seconds"], search["seconds"] = t1 - t0, t2 - t1
    search.update(trials=len(found["trials"]), epochs_saved=found["epochs_saved"], best_params=(found["best"] or {}).get("params"))
    grid.update(trials=len(configs), epochs_saved=0, lrs=[c.lr for c in configs])
    return {"problem": {"base": base, "space": str(spc.path), "epochs": epochs, "train_rows": train_rows,
                        "eval_rows": eval_rows, "budget_epochs": budget, "seed": seed},
            "grid": grid, "search": search}
