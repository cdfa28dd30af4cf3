"""``ensemble bench select``: the fast selection timed against a plain re-averaging reference on
synthetic predictions, and the two compared (same ensemble or not)."""
from __future__ import annotations

import os
import time
from typing import Any, Mapping

import numpy as np

from .. import metrics
from ..errors import EnsembleError
from ..selection import EnsembleSelector, ensemble_predictions, score_key
from ..selection.checks import check_budget
from ..selection.pool import Pool
from ..tasks import TASKS, get_task


def _reference_greedy(task: str, preds: Mapping[str, np.ndarray], y: np.ndarray, order: list[str],
                      own: dict[str, float], max_size: int | None) -> dict[str, int]:
    weights = {order[0]: 1}
    cur = score_key(task, own[order[0]])
    for c in order[1:]:
        if max_size is not None and len(weights) >= max_size:
            break
        trial = dict(weights)
        trial[c] = 1
        key = score_key(task, metrics.score(task, ensemble_predictions(preds, trial), y))
        if key >= cur:
            weights, cur = trial, key
    return weights


def _reference_step(task: str, preds: Mapping[str, np.ndarray], y: np.ndarray, counts: dict[str, int],
                    elig: list[str]) -> str:
    """The caruana step: the best-scoring addition, ties by secondary loss, then id."""
    trials = []
    for c in elig:
        trial = dict(counts)
        trial[c] = trial.get(c, 0) + 1
        e = ensemble_predictions(preds, trial)
        trials.append((score_key(task, metrics.score(task, e, y)), c, e))
    top = max(k for k, _, _ in trials)
    tied = [(metrics.secondary_loss(task, e, y), c) for k, c, e in trials if k == top]
    return min(tied)[1]


def _reference_caruana(task: str, preds: Mapping[str, np.ndarray], y: np.ndarray, order: list[str],
                       max_size: int | None, steps: int) -> dict[str, int]:
    ids = sorted(preds)
    counts: dict[str, int] = {}
    history: list[tuple[float, dict]] = []
    for t in range(steps):
        elig = sorted(counts) if max_size is not None and len(counts) >= max_size else ids
        best = order[0] if t == 0 else _reference_step(task, preds, y, counts, elig)
        counts[best] = counts.get(best, 0) + 1
        history.append((score_key(task, metrics.score(task, ensemble_predictions(preds, counts), y)), dict(counts)))
    keys = [k for k, _ in history]
    return history[keys.index(max(keys))][1]


def reference_select(task: str, preds: Mapping[str, np.ndarray], y: np.ndarray, mode: str,
                     max_size: int | None, steps: int) -> tuple[list[str], dict[str, int]]:
    """The same algorithms, re-averaging every trial ensemble from scratch and scoring with
    metrics.score: (members in order added, weights)."""
    ids = sorted(preds)
    own = {c: metrics.score(task, preds[c], y) for c in ids}
    loss = {c: metrics.secondary_loss(task, preds[c], y) for c in ids}
    order = sorted(ids, key=lambda c: (-score_key(task, own[c]), loss[c], c))
    if mode == "greedy":
        weights = _reference_greedy(task, preds, y, order, own, max_size)
    else:
        weights = _reference_caruana(task, preds, y, order, max_size, steps)
    return list(weights), weights


def synthetic_problem(task: str, m: int, n: int, seed: int):
    """Random labels and m candidates of varying quality (shared + own noise), layout (m, k, n):
    (ids, T, y)."""
    rng = np.random.default_rng([seed, list(TASKS).index(task)])
    k = TASKS[task].n_outputs
    kind = TASKS[task].kind
    if kind == "classes":
        y = np.sort(rng.integers(0, k, n))      # rows in label order, as select() lays them out
    elif kind == "binary":
        y = (rng.random(n) < 0.4).astype(np.float64)
    else:
        y = rng.uniform(0.0, 5.0, n)
    # quality varies by candidate; noise is mostly shared (candidates err alike), so ensembles
    # gain a few points, as in the report, rather than the large gains of independent errors
    quality = rng.uniform(0.5, 1.0, m)
    shared = rng.standard_normal((k, n))
    T = np.empty((m, k, n), dtype=np.float64)
    for i in range(m):
        noise = 0.9 * shared + 0.45 * rng.standard_normal((k, n))
        if kind == "classes":
            z = noise
            z[y, np.arange(n)] += 1.6 * quality[i]
            z = np.exp(z - z.max(axis=0))
            T[i] = z / z.sum(axis=0)
        elif kind == "binary":
            T[i, 0] = 1.0 / (1.0 + np.exp(-(3.0 * quality[i] * (2 * y - 1) + 2.0 * noise[0])))
        else:
            T[i, 0] = 2.0 * quality[i] * y + 2.0 * noise[0]
    ids = [f"cand{i:04d}" for i in range(m)]
    return ids, T, (y.astype(np.int64) if kind == "classes" else y)


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _timings(preds: Mapping[str, np.ndarray], task: str, y: np.ndarray) -> tuple[float, float]:
    """Seconds to re-average one member, per further member, and per metric call (with one average)."""
    ids = list(preds)
    few = {c: 1 for c in ids[:6]}
    reps = 3
    t0 = time.perf_counter()
    for _ in range(reps):
        e = ensemble_predictions(preds, {ids[0]: 1})
    one = (time.perf_counter() - t0) / reps
    t0 = time.perf_counter()
    for _ in range(reps):
        e = ensemble_predictions(preds, few)
    per_member = max(0.0, (time.perf_counter() - t0) / reps - one) / max(1, len(few) - 1)
    t0 = time.perf_counter()
    for _ in range(reps):
        metrics.score(task, e, y)
        metrics.secondary_loss(task, e, y)
    return per_member, (time.perf_counter() - t0) / reps + one


def _plain_estimate(task: str, preds: Mapping[str, np.ndarray], y: np.ndarray, mode: str,
                    est: EnsembleSelector) -> float:
    """Seconds the plain run should need: its trial sizes (from the fast run's trajectory) times
    the measured cost of re-averaging one member and of one metric call."""
    m = len(preds)
    per_member, per_score = _timings(preds, task, y)
    if mode == "greedy":
        sizes, size = [], 1
        for s in est.trajectory_[1:]:
            if s.ensemble_score is not None:
                sizes.append(size + 1)
            size += bool(s.accepted)
        members_added = sum(sizes)
        n_trials = len(sizes) + m
    else:
        distinct, seen = [], set()
        for s in est.trajectory_[:-1]:
            seen.add(s.candidate)
            distinct.append(len(seen))
        members_added = m * sum(d + 1 for d in distinct)
        n_trials = m * len(distinct) + m
    return n_trials * per_score + members_added * per_member


def _compare_all(tk: str, md: str, y: np.ndarray, plain_preds: Mapping[str, np.ndarray],
                 est: EnsembleSelector, steps: int, fast_s: float) -> dict[str, Any]:
    """The plain run on all candidates, timed and compared with the fast result ``est``."""
    t0 = time.perf_counter()
    members, weights = reference_select(tk, plain_preds, y, md, None, steps)
    plain_s = time.perf_counter() - t0
    return {"plain_s": plain_s, "speedup": plain_s / fast_s,
            "identical": (members == est.members_ and weights == est.weights_), "plain_on_prefix": None}


def _compare_prefix(tk: str, md: str, ids: list[str], T: np.ndarray, y: np.ndarray,
                    plain_preds: Mapping[str, np.ndarray], steps: int, p: int, why: str) -> dict[str, Any]:
    """Both runs on the first ``p`` candidates (ids ascending), timed and compared."""
    sub_ids = ids[:p]
    t0 = time.perf_counter()
    est_p = EnsembleSelector(tk, md, None, steps).fit_pool(Pool(tk, sub_ids, T[:p], y))
    fast_p = time.perf_counter() - t0
    t0 = time.perf_counter()
    members, weights = reference_select(tk, {c: plain_preds[c] for c in sub_ids}, y, md, None, steps)
    plain_p = time.perf_counter() - t0
    return {"plain_s": None, "speedup": None,
            "identical": (members == est_p.members_ and weights == est_p.weights_),
            "plain_on_prefix": {"candidates": p, "fast_s": fast_p, "plain_s": plain_p,
                                "speedup": plain_p / fast_p, "why": why}}


def _bench_one(tk: str, md: str, ids: list[str], T: np.ndarray, y: np.ndarray,
               plain_preds: Mapping[str, np.ndarray], steps: int, plain_budget_s: float) -> dict[str, Any]:
    """One task and mode: the fast run timed, then the plain run (on a prefix if too slow)."""
    t0, c0 = time.perf_counter(), time.process_time()
    pool = Pool(tk, ids, T, y)
    est = EnsembleSelector(tk, md, None, steps).fit_pool(pool)
    fast_s, fast_cpu = time.perf_counter() - t0, time.process_time() - c0
    entry: dict[str, Any] = {"fast_s": fast_s, "fast_cpu_s": fast_cpu, "ensemble_size": len(est.members_),
                             "total_weight": int(sum(est.weights_.values())),
                             "in_sample_score": est.score_, "best_single_score": est.best_single_score_}
    # estimate the plain run's cost from one timed trial of the fast result's size
    est_s = _plain_estimate(tk, plain_preds, y, md, est)
    entry["plain_estimated_s"] = est_s
    if est_s <= plain_budget_s:
        entry.update(_compare_all(tk, md, y, plain_preds, est, steps, fast_s))
        return entry
    candidates = len(ids)
    p = max(2, int(candidates * plain_budget_s / est_s))
    why = (f"plain run estimated at {est_s:.0f} s > {plain_budget_s:.0f} s on all {candidates} candidates; "
           f"both timed on the first {p} (ids ascending), 'identical' compares those")
    entry.update(_compare_prefix(tk, md, ids, T, y, plain_preds, steps, p, why))
    return entry


def bench_select(candidates: int = 500, rows: int = 20000, task: str | None = None, seed: int = 0,
                 mode: str = "greedy", steps: int = 50, plain_budget_s: float = 60.0) -> dict:
    """Time the fast selection against a plain re-averaging one on synthetic predictions.

    ``task``: one task or None for all three. ``mode``: "greedy", "caruana" or "both". Both
    implementations run the same algorithm on the same aligned arrays (fast: the running-sum
    scorer, timed from the stacked arrays including its precomputation; plain: re-average all
    members from scratch for every trial and score with ``metrics.score``), and the chosen
    ensembles are compared. Where the plain run is estimated to exceed ``plain_budget_s`` seconds,
    both are also timed on a prefix of the candidates (ids ascending), which the output says.

    Times are wall-clock seconds from ``time.perf_counter``; ``fast_cpu_s`` is this process's CPU
    time (``time.process_time``), which a busy machine inflates less. The synthetic sst rows are
    generated in label order, the layout :func:`ensemble.selection.select` builds (its copy into
    that order is not timed here, as the data is generated in place).
    """
    if task is not None:
        get_task(task)
    if mode not in ("greedy", "caruana", "both"):
        raise EnsembleError(f"unknown mode {mode!r}; expected greedy, caruana or both")
    if candidates < 2 or rows < 4:
        raise EnsembleError("bench_select needs at least 2 candidates and 4 rows")
    modes = ("greedy", "caruana") if mode == "both" else (mode,)
    check_budget(None, steps)
    tasks = list(TASKS) if task is None else [task]
    out: dict[str, Any] = {
        "candidates": int(candidates), "rows": int(rows), "steps": int(steps), "seed": int(seed),
        "cpu_count": os.cpu_count(), "load_avg_1min": _load(), "timer": "time.perf_counter (wall)",
        "results": {},
    }
    fast_total = {md: 0.0 for md in modes}
    for tk in tasks:
        ids, T, y = synthetic_problem(tk, candidates, rows, seed)
        plain_preds = {c: np.ascontiguousarray(T[i].T) for i, c in enumerate(ids)}
        for md in modes:
            entry = _bench_one(tk, md, ids, T, y, plain_preds, steps, plain_budget_s)
            fast_total[md] += entry["fast_s"]
            out["results"][f"{tk}/{md}"] = entry
        del T, plain_preds
    for md in modes:
        out[f"fast_{md}_total_s"] = fast_total[md]
    if "greedy" in modes and task is None:
        out["target"] = "fast greedy selection, all three tasks, under 1 s on a 2-core CPU"
        out["target_met"] = fast_total["greedy"] < 1.0
    out["load_avg_1min_end"] = _load()
    return out
