"""``ensemble bench honesty``: does the held-out gain interval mean what it says, and which mode
holds up on unseen rows? A simulation with known truth, and a check on real candidates.

Simulation. A scenario is a population of rows and a fixed library of candidates whose errors are
correlated: every candidate's noise is ``shared * a + family * b + own * c`` (standard normal per
row and output), ``b`` common to the runs of one family (same base model, other seeds), ``a`` to
all. Quality ``q_i = 1 + spread * U(-1, 1)`` varies by candidate:

- ``sst``: logits ``noise`` plus ``1.6 q_i`` on the label's class, softmax (5 classes, uniform labels);
- ``para``: ``sigmoid(2.2 q_i (2y - 1) + 1.6 noise)``, ``P(y = 1) = 0.37``;
- ``sts``: ``2 q_i y + 2.4 noise``, ``y ~ U(0, 5)``.

Per replication a dev sample of the course's size is drawn; each mode selects on all of it
(:class:`ensemble.selection.EnsembleSelector`), and the true gain is that ensemble's score minus
the score of the best single candidate chosen on dev, both on a population sample of ``n_pop``
rows that no selection sees. Estimate and interval: the selection package's cross-fit
(:mod:`ensemble.selection.crossfit`) on the dev sample. Everything is a function of ``seed``, the
scenario's name and the replication index.

Real check (:func:`real_check`): on a registry's candidates, ``splits`` times a fraction of the
dev rows (chosen by a hash of seed, split and row id) is held out as labelled unseen rows; each
mode selects on the rest (``ensemble.selection.select``, as ``ensemble select`` does) and the
ensemble and the best single candidate chosen on the rest are scored on the held-out rows.
"""
from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import stats

from .. import data as data_mod
from .. import metrics
from ..errors import EnsembleError
from ..progress import NULL, Progress
from ..registry.store import Registry
from ..selection import MODES, EnsembleSelector, TaskInput, ensemble_predictions, score_on
from ..selection.inputs import align
from ..selection.crossfit import cross_fit_pool
from ..selection.pool import Pool
from ..tasks import TASKS, get_task
from ..workflow import dev_predictions, usable_candidates

HONESTY_MODES = tuple(MODES)
COURSE_DEV_ROWS = {"sst": 1101, "para": 3000, "sts": 863}
TARGETS = {"coverage": (0.90, 0.99), "bias_over_sd": 0.25, "width_ratio": 1.5}


@dataclass(frozen=True)
class Scenario:
    name: str
    task: str
    candidates: int
    families: int
    spread: float          # half-range of the candidates' quality around 1
    n_dev: int
    n_pop: int = 20000
    shared: float = 1.2    # noise weights: shared, family, own
    family: float = 0.5
    own: float = 0.4


SCENARIOS: dict[str, Scenario] = {
    sc.name: sc for sc in (
        Scenario(f"{t}-m{m}-{label}", t, m, f, s, COURSE_DEV_ROWS[t])
        for t in ("sst", "para", "sts")
        for (m, f, s, label) in ((8, 3, 0.05, "narrow"), (30, 6, 0.25, "wide"))
    )
}


def library(sc: Scenario, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The candidates' qualities and families."""
    rng = np.random.default_rng([seed, zlib.crc32(sc.name.encode()), 0])
    return 1.0 + sc.spread * rng.uniform(-1.0, 1.0, sc.candidates), np.arange(sc.candidates) % sc.families


def simulate(sc: Scenario, q: np.ndarray, fam: np.ndarray, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Labels (n,) and predictions (m, n, k) of the library on n fresh population rows."""
    k, kind, m = TASKS[sc.task].n_outputs, TASKS[sc.task].kind, len(q)
    noise = (sc.shared * rng.standard_normal((1, n, k))
             + sc.family * rng.standard_normal((sc.families, n, k))[fam]
             + sc.own * rng.standard_normal((m, n, k)))
    if kind == "classes":
        y = rng.integers(0, k, n)
        noise[:, np.arange(n), y] += 1.6 * q[:, None]
        z = np.exp(noise - noise.max(axis=2, keepdims=True))
        return y.astype(np.int64), z / z.sum(axis=2, keepdims=True)
    if kind == "binary":
        y = (rng.random(n) < 0.37).astype(np.float64)
        return y, 1.0 / (1.0 + np.exp(-(2.2 * q[:, None, None] * (2 * y - 1)[None, :, None] + 1.6 * noise)))
    y = rng.uniform(0.0, 5.0, n)
    return y, 2.0 * q[:, None, None] * y[None, :, None] + 2.4 * noise


def summarise(err, covered, width, true_gain, estimate, level: float = 0.95) -> dict[str, Any]:
    """Coverage, bias, RMSE, width against the oracle width (2 x z x SD of the error, z the normal
    quantile of ``level`` to two decimals, as tables give it: 1.96 at 95%, 1.64 at 90%)."""
    err = np.asarray(err, dtype=np.float64)
    sd = float(err.std(ddof=1)) if len(err) > 1 else float("nan")
    bias = float(err.mean())
    oracle = 2 * round(float(stats.norm.ppf(0.5 + level / 2)), 2) * sd
    out = {
        "coverage": float(np.mean(covered)), "bias": bias, "sd_error": sd,
        "bias_over_sd": bias / sd if sd > 0 else float("nan"),
        "rmse": float(np.sqrt(np.mean(err ** 2))), "mean_width": float(np.mean(width)),
        "oracle_width": oracle, "width_ratio": float(np.mean(width)) / oracle if oracle > 0 else float("nan"),
        "true_gain": float(np.mean(true_gain)), "estimate": float(np.mean(estimate)),
    }
    lo, hi = TARGETS["coverage"]
    out["meets_targets"] = bool(lo <= out["coverage"] <= hi and abs(out["bias_over_sd"]) <= TARGETS["bias_over_sd"]
                                and out["width_ratio"] <= TARGETS["width_ratio"])
    return out


def get_scenarios(names: Sequence[str | Scenario] | None) -> list[Scenario]:
    """The scenarios by name in :data:`SCENARIOS` (or given as :class:`Scenario`; None: all)."""
    if names is None:
        return list(SCENARIOS.values())
    unknown = [n for n in names if not isinstance(n, Scenario) and n not in SCENARIOS]
    if unknown or not names:
        raise EnsembleError(f"unknown or no scenario(s) {', '.join(unknown)}; expected some of {', '.join(SCENARIOS)}")
    return [n if isinstance(n, Scenario) else SCENARIOS[n] for n in names]


def check_modes(modes: Sequence[str]) -> tuple[str, ...]:
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise EnsembleError(f"unknown or no mode(s) {', '.join(unknown)}; expected some of {', '.join(MODES)}")
    return tuple(modes)


def _replicate(sc: Scenario, md: str, pool: Pool, row_ids: list[str], pop: dict, y_pop: np.ndarray,
               pop_single: dict[str, float], settings: dict, seed: int) -> tuple[float, Any]:
    """(true gain, cross-fit) of mode ``md`` on one dev sample."""
    full = EnsembleSelector(sc.task, md, None, settings["steps"], settings["bags"], seed=seed).fit_pool(pool)
    truth = metrics.score(sc.task, ensemble_predictions(pop, full.weights_), y_pop) - pop_single[full.best_single_]
    cf = cross_fit_pool(pool, [row_ids[i] for i in pool.rows], full, settings["folds"], settings["repeats"], seed,
                        settings["level"])
    return float(truth), cf


def _scenario_rows(sc: Scenario, replications: int, modes: tuple[str, ...], seed: int, settings: dict,
                   progress: Progress) -> list[dict[str, Any]]:
    q, fam = library(sc, seed)
    tag = zlib.crc32(sc.name.encode())
    y_pop, P_pop = simulate(sc, q, fam, sc.n_pop, np.random.default_rng([seed, tag, 1]))
    ids = [f"cand{i:03d}" for i in range(sc.candidates)]
    pop = {c: P_pop[i] for i, c in enumerate(ids)}
    pop_single = {c: metrics.score(sc.task, pop[c], y_pop) for c in ids}
    row_ids = [f"r{i:05d}" for i in range(sc.n_dev)]
    rec = {md: {"err": [], "cov": [], "width": [], "true": [], "est": []} for md in modes}
    for r in range(replications):
        y, P = simulate(sc, q, fam, sc.n_dev, np.random.default_rng([seed, tag, 2, r]))
        pool = Pool.from_aligned(sc.task, {c: P[i] for i, c in enumerate(ids)}, y)
        for md in modes:
            truth, cf = _replicate(sc, md, pool, row_ids, pop, y_pop, pop_single, settings, seed * 1_000_003 + r)
            d = rec[md]
            d["err"].append(cf.estimate - truth)
            d["cov"].append(cf.low <= truth <= cf.high)
            d["width"].append(cf.high - cf.low)
            d["true"].append(truth)
            d["est"].append(cf.estimate)
        progress.advance()
    return [{"scenario": sc.name, "task": sc.task, "candidates": sc.candidates, "spread": sc.spread,
             "n_dev": sc.n_dev, "mode": md, "replications": replications,
             **summarise(rec[md]["err"], rec[md]["cov"], rec[md]["width"], rec[md]["true"], rec[md]["est"],
                         settings["level"])}
            for md in modes]


def run_honesty(replications: int = 200, scenarios: Sequence[str | Scenario] | None = None,
                modes: Sequence[str] = HONESTY_MODES, seed: int = 0, folds: int = 5, repeats: int = 2,
                bags: int = 10, steps: int = 50, level: float = 0.95,
                progress: Progress = NULL) -> dict[str, Any]:
    """One row per (scenario, mode): coverage, bias, RMSE, width vs oracle width, true gain (module doc).

    ``bags`` defaults to 10 here (half of selection's 20) to keep 200 replications near a quarter
    of an hour of one CPU: bagged selection is ``bags x (folds x repeats + 1)`` caruana runs per
    replication and dominates the cost.
    """
    if replications < 2:
        raise EnsembleError("run_honesty needs at least 2 replications (the oracle width is an SD)")
    chosen, modes = get_scenarios(scenarios), check_modes(modes)
    settings = {"folds": folds, "repeats": repeats, "bags": bags, "steps": steps, "level": level}
    progress.start("honesty simulation", replications * len(chosen))
    rows = [row for sc in chosen for row in _scenario_rows(sc, replications, modes, seed, settings, progress)]
    progress.stop()
    return {"replications": replications, "seed": seed, "settings": settings, "modes": list(modes),
            "interval": f"repeated {folds}-fold cross-fitting x {repeats}, Nadeau-Bengio corrected resampled t "
                        f"(df = {folds - 1}), {level:.0%}",
            "targets": TARGETS, "rows": rows,
            "mean_true_gain": {md: float(np.mean([r["true_gain"] for r in rows if r["mode"] == md])) for md in modes}}


def holdout_rows(ids: Sequence[str], fraction: float, seed: int, split: int) -> set[str]:
    """The ``round(fraction * n)`` ids with the smallest sha256 of ``"seed:split:id"``."""
    key = {i: hashlib.sha256(f"{seed}:{split}:{i}".encode()).hexdigest() for i in ids}
    return set(sorted(ids, key=lambda i: (key[i], i))[:int(round(fraction * len(ids)))])


def _subset(ids: list[str], arr: np.ndarray, keep: list[str]) -> tuple[list[str], np.ndarray]:
    pos = {i: j for j, i in enumerate(ids)}
    return keep, np.asarray(arr)[[pos[i] for i in keep]]


def _real_split(task: str, split, cands: dict, held: set[str], modes: tuple[str, ...], seed: int,
                steps: int, bags: int) -> dict[str, float]:
    """Held-out gain over the best single of each mode, selected on the rows outside ``held``."""
    labelled = [str(i) for i, v in zip(split.ids, np.asarray(split.labels, dtype=np.float64)) if np.isfinite(v)]
    lab = dict(zip([str(i) for i in split.ids], split.labels))
    rest = [i for i in labelled if i not in held]
    out_ids = [i for i in labelled if i in held]
    inp = TaskInput(task=task, dev_ids=rest, dev_labels=[lab[i] for i in rest],
                    candidates={c: _subset([str(i) for i in ids], a, rest) for c, (ids, a) in cands.items()})
    held_preds = {c: _subset([str(i) for i in ids], a, out_ids)[1] for c, (ids, a) in cands.items()}
    y_out = np.asarray([lab[i] for i in out_ids])
    pool = align(inp).pool            # joined, stacked and hashed once for every mode
    gains = {}
    for md in modes:
        est = EnsembleSelector(task, md, None, steps, bags, seed=seed).fit_pool(pool)
        single = score_on(task, held_preds, y_out, {est.best_single_: 1})
        gains[md] = score_on(task, held_preds, y_out, est.weights_) - single
    return gains


def real_check(registry: Registry, data_dir: Path | str, holdout: float = 0.3, splits: int = 20,
               modes: Sequence[str] = HONESTY_MODES, seed: int = 0, tasks: Sequence[str] = tuple(TASKS),
               steps: int = 50, bags: int = 20, progress: Progress = NULL) -> dict[str, Any]:
    """Per task and mode: mean held-out gain over the best single, its SD across splits, and the
    mean difference from greedy (module doc)."""
    if not 0 < holdout < 1 or splits < 1:
        raise EnsembleError(f"real_check needs holdout in (0, 1) and splits >= 1, got {holdout}, {splits}")
    modes = check_modes(modes)
    notes: list[str] = []
    usable, _ = usable_candidates(registry.candidates(), Path(data_dir), notes)
    rows = []
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
                                   modes, seed, steps, bags))
            progress.advance()
        progress.stop()
        rows.extend(_real_rows(task, len(cands), per, modes))
    return {"holdout": holdout, "splits": splits, "seed": seed, "modes": list(modes), "rows": rows, "notes": notes}


def _real_rows(task: str, n_cands: int, per: list[dict[str, float]], modes: tuple[str, ...]) -> list[dict]:
    rows = []
    for md in modes:
        g = np.array([p[md] for p in per])
        row = {"task": task, "mode": md, "candidates": n_cands, "mean_gain": float(g.mean()),
               "sd_gain": float(g.std(ddof=1)) if len(g) > 1 else float("nan")}
        if "greedy" in modes:
            row["vs_greedy"] = float(np.mean(g - np.array([p["greedy"] for p in per])))
        rows.append(row)
    return rows
