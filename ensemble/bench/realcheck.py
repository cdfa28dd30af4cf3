"""``ensemble bench honesty --registry``: the modes, and ``auto``'s choice, on real candidates.

``splits`` times a fraction of the dev rows (chosen by a hash of seed, split and row id) is held
out as labelled unseen rows; each mode selects on the rest (``ensemble.selection.select``'s
selector, as ``ensemble select`` does) and the ensemble and the best single candidate chosen on
the rest are scored on the held-out rows. Each mode is also cross-fitted on the rest (its
estimate, the one ``auto`` chooses by), and ``auto``'s held-out gain is that of the system the
estimates choose (0 where it is the best single candidate). On all of dev, per task, ``auto``
is run as ``select`` runs it: every system's estimate, the choice and its nested estimate.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import data as data_mod
from ..errors import EnsembleError
from ..progress import NULL, Progress
from ..registry.store import Registry
from ..selection import AUTO, MODES, EnsembleSelector, TaskInput, score_on, select
from ..selection.choice import SINGLE, choose
from ..selection.crossfit import cross_fit_pool
from ..selection.inputs import align
from ..tasks import TASKS, get_task
from ..workflow import dev_predictions, usable_candidates
from .honesty import HONESTY_MODES, check_modes


def holdout_rows(ids: Sequence[str], fraction: float, seed: int, split: int) -> set[str]:
    """The ``round(fraction * n)`` ids with the smallest sha256 of ``"seed:split:id"``."""
    key = {i: hashlib.sha256(f"{seed}:{split}:{i}".encode()).hexdigest() for i in ids}
    return set(sorted(ids, key=lambda i: (key[i], i))[:int(round(fraction * len(ids)))])


def _subset(ids: list[str], arr: np.ndarray, keep: list[str]) -> tuple[list[str], np.ndarray]:
    pos = {i: j for j, i in enumerate(ids)}
    return keep, np.asarray(arr)[[pos[i] for i in keep]]


def _real_split(task: str, split, cands: dict, held: set[str], modes: tuple[str, ...], seed: int,
                steps: int, bags: int, repeats: int, folds: int) -> dict[str, dict[str, Any]]:
    """mode -> held-out gain over the best single (``gain``), selected on the rows outside ``held``,
    and the cross-fitted estimate there (``estimate``; with ``repeats`` 0: none); auto: the choice."""
    labelled = [str(i) for i, v in zip(split.ids, np.asarray(split.labels, dtype=np.float64)) if np.isfinite(v)]
    lab = dict(zip([str(i) for i in split.ids], split.labels))
    rest = [i for i in labelled if i not in held]
    out_ids = [i for i in labelled if i in held]
    inp = TaskInput(task=task, dev_ids=rest, dev_labels=[lab[i] for i in rest],
                    candidates={c: _subset([str(i) for i in ids], a, rest) for c, (ids, a) in cands.items()})
    held_preds = {c: _subset([str(i) for i in ids], a, out_ids)[1] for c, (ids, a) in cands.items()}
    y_out = np.asarray([lab[i] for i in out_ids])
    aligned = align(inp)              # joined, stacked and hashed once for every mode
    pool = aligned.pool
    out = {}
    for md in (tuple(MODES) if AUTO in modes else modes):
        est = EnsembleSelector(task, md, None, steps, bags, seed=seed).fit_pool(pool)
        single = score_on(task, held_preds, y_out, {est.best_single_: 1})
        cf = cross_fit_pool(pool, aligned.row_ids, est, folds, repeats, seed, 0.95) if repeats else None
        out[md] = {"gain": score_on(task, held_preds, y_out, est.weights_) - single,
                   "estimate": None if cf is None else cf.estimate}
    if AUTO in modes:
        chosen = choose({md: out[md]["estimate"] for md in MODES}) if repeats else None
        out[AUTO] = {"gain": 0.0 if chosen in (SINGLE, None) else out[chosen]["gain"],
                     "estimate": None if chosen in (SINGLE, None) else out[chosen]["estimate"], "chosen": chosen}
    return out


def _full_dev(task: str, split, cands: dict, seed: int, steps: int, bags: int, repeats: int,
              folds: int) -> dict[str, Any]:
    """``auto`` on all of dev, as ``select`` runs it: each system's estimate, the choice, the nested estimate."""
    sel = select(TaskInput(task, split.ids, split.labels, cands), mode=AUTO, steps=steps, bags=bags, seed=seed,
                 repeats=repeats, folds=folds)
    return {"systems": sel.systems, "chosen": sel.chosen, "reason": sel.choice_reason,
            "nested": None if sel.heldout_gain_mean is None else
            {"estimate": sel.heldout_gain_mean, "low": sel.heldout_gain_ci[0], "high": sel.heldout_gain_ci[1]}}


def real_check(registry: Registry, data_dir: Path | str, holdout: float = 0.3, splits: int = 20,
               modes: Sequence[str] = HONESTY_MODES, seed: int = 0, tasks: Sequence[str] = tuple(TASKS),
               steps: int = 50, bags: int = 20, repeats: int = 2, folds: int = 5, progress: Progress = NULL) -> dict[str, Any]:
    """Per task and mode: mean held-out gain over the best single, its SD across splits, the mean
    difference from greedy and the mean cross-fitted estimate; ``auto``: how often each system was
    chosen, and (``full_dev``) its choice on all of dev (module doc). ``repeats`` 0: no estimates."""
    if not 0 < holdout < 1 or splits < 1:
        raise EnsembleError(f"real_check needs holdout in (0, 1) and splits >= 1, got {holdout}, {splits}")
    modes = check_modes(modes)
    notes: list[str] = []
    usable, _ = usable_candidates(registry.candidates(), Path(data_dir), notes)
    rows, full = [], {}
    for task in tasks:
        get_task(task)
        split = data_mod.read_split(Path(data_dir), task, "dev")
        cands, _ = dev_predictions(task, usable, notes)
        if not cands:
            notes.append(f"{task}: no candidate has dev predictions; left out")
            continue
        progress.start(f"real check {task}", splits)
        per = []
        for s in range(splits):
            per.append(_real_split(task, split, cands, holdout_rows([str(i) for i in split.ids], holdout, seed, s),
                                   modes, seed, steps, bags, repeats, folds))
            progress.advance()
        progress.stop()
        rows.extend(_real_rows(task, len(cands), per, modes))
        if AUTO in modes and repeats:
            full[task] = _full_dev(task, split, cands, seed, steps, bags, repeats, folds)
    return {"holdout": holdout, "splits": splits, "seed": seed, "folds": folds, "repeats": repeats,
            "modes": list(modes), "rows": rows,
            "full_dev": full, "notes": notes}


def _mean(values: list) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def _real_rows(task: str, n_cands: int, per: list[dict[str, dict]], modes: tuple[str, ...]) -> list[dict]:
    rows = []
    for md in modes:
        g = np.array([p[md]["gain"] for p in per])
        row = {"task": task, "mode": md, "candidates": n_cands, "mean_gain": float(g.mean()),
               "sd_gain": float(g.std(ddof=1)) if len(g) > 1 else float("nan"),
               "mean_estimate": _mean([p[md]["estimate"] for p in per])}
        if "greedy" in modes:
            row["vs_greedy"] = float(np.mean(g - np.array([p["greedy"]["gain"] for p in per])))
        if md == AUTO:
            picks = [p[md]["chosen"] for p in per if p[md]["chosen"] is not None]
            row["chosen"] = {s: picks.count(s) for s in sorted(set(picks))}
        rows.append(row)
    return rows
