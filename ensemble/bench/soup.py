"""``bench soup``: per task, the best single candidate, the uniform soup, the greedy soup and the
default ensemble of the same candidates, in one run: dev score, held-out gain over the best single
[interval] (soups: :func:`ensemble.soup.honest.soup_cross_fit`; the ensemble: what ``select`` saves,
its estimate on the same folds), parameters, prediction throughput
(sentences per second over dev, best of ``repeats``) and peak memory while predicting, with each
system's ratio against the ensemble measured in the same run; and what building the soups cost
(forward passes over dev, seconds).

The ensemble runs its members one after the other, every member loaded before the clock starts
(as a server holding the ensemble would); its parameters are the sum of its distinct members'.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import metrics
from ..errors import EnsembleError
from ..progress import NULL, Progress
from ..registry.store import Registry
from ..selection import DEFAULT_MODE, TaskInput, select
from ..soup.build import check_tasks, find_groups
from ..soup.honest import soup_cross_fit
from ..soup.path import best_first, soup_path
from .machine import PeakMemory, load_average, time_calls


def _speed(fn, n_rows: int, repeats: int, device) -> dict[str, Any]:
    with PeakMemory(device) as mem:
        times, _ = time_calls(fn, repeats, device)
    return {"seconds": min(times), "sentences_per_s": n_rows / min(times), "peak_mib": mem.peak_mib}


def _ensemble_rows(task: str, souper, honest: dict) -> tuple[dict[str, float], dict[str, Any]]:
    """What ``select`` saves by default over the group (:data:`DEFAULT_MODE`, ``auto``: per task the
    system with the best held-out estimate): weights and its row (no timing yet)."""
    preds = {c: souper.singles[c][task] for c in souper.singles}
    ids = list(souper.ids[task])
    sel = select(TaskInput(task, ids, souper.labels[task], {c: (ids, p) for c, p in preds.items()}), DEFAULT_MODE,
                 **honest)
    cf = sel.heldout
    what = f"{sel.chosen}" if getattr(sel, "chosen", None) else DEFAULT_MODE
    return dict(sel.weights), {"system": f"ensemble ({what})", "members": len(sel.weights),
                               "dev": float(sel.ensemble_dev_score), "heldout": None if cf is None else cf.estimate,
                               "low": None if cf is None else cf.low, "high": None if cf is None else cf.high}


def _task_rows(task: str, souper, honest: dict, repeats: int, progress: Progress) -> list[dict[str, Any]]:
    from ..modeling.model import load_model   # lazy: torch

    lab = {task: souper.labels[task]}
    best = best_first([task], souper.singles, lab)[0]
    split = souper.splits[(task, "dev")]
    n = len(split)
    single = load_model(souper.members[best].model_dir, souper.device)[0]
    rows = [{"system": "best single", "members": 1, "dev": metrics.score(task, souper.singles[best][task], lab[task]),
             "heldout": None, "low": None, "high": None, "parameters": single.num_parameters(),
             **_speed(lambda: souper.predict_with(single, split), n, repeats, souper.device)}]
    del single
    for recipe in ("uniform", "greedy"):
        path = soup_path(recipe, [task], souper.singles, souper.soup_of, lab)
        h = soup_cross_fit(task, souper.ids[task], lab[task], souper.singles, souper.soup_of, recipe=recipe, **honest)
        model = souper.load(sorted(path.members))
        rows.append({"system": f"{recipe} soup", "members": len(path.members), "dev": path.score,
                     "heldout": h.estimate, "low": h.low, "high": h.high, "parameters": model.num_parameters(),
                     **_speed(lambda: souper.predict(split), n, repeats, souper.device)})
        progress.advance()
    weights, row = _ensemble_rows(task, souper, honest)
    models = [load_model(souper.members[c].model_dir, souper.device)[0] for c in weights]
    row["parameters"] = sum(m.num_parameters() for m in models)
    row.update(_speed(lambda: [souper.predict_with(m, split) for m in models], n, repeats, souper.device))
    rows.append(row)
    for r in rows:
        r["task"] = task
        r["speed_vs_ensemble"] = r["sentences_per_s"] / row["sentences_per_s"]
        r["parameters_vs_ensemble"] = r["parameters"] / row["parameters"]
    return rows


def bench_soup(registry: Registry, data_dir: Path | str, tasks: Sequence[str] | None = None, device=None,
               repeats: int = 3, folds: int = 5, cf_repeats: int = 2, seed: int = 0, level: float = 0.95,
               progress: Progress = NULL) -> dict[str, Any]:
    """The rows of every task of the largest soupable group (module doc)."""
    from ..soup.average import Souper   # lazy: torch

    if repeats < 1:
        raise EnsembleError(f"--repeats {repeats}: expected at least 1 timed call")
    groups, left = find_groups(registry.candidates())
    check_tasks(groups, tasks)
    group = groups[0]
    want = [t for t in group.tasks if tasks is None or t in tasks]
    if not want:
        raise EnsembleError(f"the largest soupable group ({', '.join(group.ids)}) has none of the tasks asked for")
    honest = {"folds": folds, "repeats": cf_repeats, "seed": seed, "level": level}
    t0 = time.perf_counter()
    souper = Souper(group.members, want, Path(data_dir), device, progress=progress)
    progress.start("bench soup", 2 * len(want))
    rows = [r for t in want for r in _task_rows(t, souper, honest, repeats, progress)]
    progress.stop()
    return {"title": "soups against the best single candidate and the ensemble",
            "group": group.to_dict(), "left_out": [x.to_dict() for x in left], "device": str(souper.device),
            "rows": rows, "build": {"forward_passes": souper.forward_passes, "seconds": souper.seconds,
                                    "total_seconds": time.perf_counter() - t0},
            "load_average": load_average(), "settings": {**honest, "timing_repeats": repeats},
            "notes": ["held-out: gain over the best single candidate (chosen on the other folds), mean of "
                      f"{folds} x {cf_repeats} folds, {level:.0%} Nadeau-Bengio interval",
                      "ensemble: members run one after the other, all loaded before the clock starts"]}
