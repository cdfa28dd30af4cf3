"""``ensemble bench honesty``: does the held-out gain interval mean what it says, and which mode
holds up on unseen rows? A simulation with known truth, and a check on real candidates.

Simulation. A scenario is a population of rows and a fixed library of candidates whose errors are
correlated: every candidate's noise is ``shared * a + family * b + own * c`` (standard normal per
row and output), ``b`` common to the runs of one family (same base model, other seeds), ``a`` to
all. Quality ``q_i = 1 + spread * U(-1, 1)`` varies by candidate:

- ``sst``: logits ``noise`` plus ``1.6 q_i`` on the label's class plus the candidate's fixed offset
  per class (``class_bias`` x standard normal; 0 in the first six scenarios), softmax (5 classes;
  labels uniform, or the course's SST dev shares where the scenario says so);
- ``para``: ``sigmoid(2.2 q_i (2y - 1) + 1.6 noise)``, ``P(y = 1) = 0.37``;
- ``sts``: ``2 q_i y + 2.4 noise``, ``y ~ U(0, 5)``.

Per replication a dev sample of the course's size is drawn; each mode selects on all of it
(:class:`ensemble.selection.EnsembleSelector`), and the true gain is that ensemble's score minus
the score of the best single candidate chosen on dev, both on a population sample of ``n_pop``
rows that no selection sees. Estimate and interval: the selection package's cross-fit
(:mod:`ensemble.selection.crossfit`) on the dev sample. Everything is a function of ``seed``, the
scenario's name and the replication index.

``auto`` (:mod:`ensemble.selection.choice`): the system with the best cross-fitted estimate among
the best single candidate and every mode, chosen on the dev sample; its true gain is the chosen
system's (0 for the best single), its estimate and interval the nested cross-fit's. Its row also
gives the bias of the un-nested estimate it was chosen by (``naive_bias``), how often each system
was chosen, and its true gain minus the best fixed mode's with the standard error of that paired
difference over the replications.

The real check on a registry's candidates is :mod:`.realcheck`.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import stats

from .. import metrics
from ..errors import EnsembleError
from ..progress import NULL, Progress
from ..selection import AUTO, MODES, EnsembleSelector, ensemble_predictions
from ..selection.choice import SINGLE, choose, nested_cross_fit
from ..selection.crossfit import cross_fit_pool
from ..selection.pool import Pool
from ..tasks import TASKS

HONESTY_MODES = (*MODES, AUTO)
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
    classes: tuple[float, ...] | None = None   # sst: the label distribution (None: uniform)
    class_bias: float = 0.0                    # sst: SD of each candidate's fixed logit offset per class


SST_DEV_CLASSES = (0.13, 0.26, 0.19, 0.27, 0.15)   # the course's SST dev: 139, 289, 229, 279, 165 of 1,101 rows

SCENARIOS: dict[str, Scenario] = {
    sc.name: sc for sc in (
        *(Scenario(f"{t}-m{m}-{label}", t, m, f, s, COURSE_DEV_ROWS[t])
          for t in ("sst", "para", "sts")
          for (m, f, s, label) in ((8, 3, 0.05, "narrow"), (30, 6, 0.25, "wide"))),
        # where the modes differ (the pattern of the real SST candidates: greedy keeps the best single,
        # caruana's weights chase the small classes' dev rows, bagged's bags without the best lose):
        # one clearly better candidate among correlated ones that lean to some classes, small classes
        Scenario("sst-m8-smallclass", "sst", 8, 4, 0.5, COURSE_DEV_ROWS["sst"], shared=1.4, family=0.3, own=0.3,
                 classes=SST_DEV_CLASSES, class_bias=0.5),
        # one clearly best candidate among highly correlated ones: little or nothing beats it
        Scenario("para-m6-onebest", "para", 6, 2, 0.6, COURSE_DEV_ROWS["para"], shared=1.4, family=0.3, own=0.2),
        # diverse candidates of unequal quality: weighting pays
        Scenario("sts-m12-diverse", "sts", 12, 12, 0.5, COURSE_DEV_ROWS["sts"], shared=0.5, family=0.0, own=1.3),
    )
}


def library(sc: Scenario, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates' qualities, families and fixed per-class logit offsets ``(m, k)`` (sst)."""
    rng = np.random.default_rng([seed, zlib.crc32(sc.name.encode()), 0])
    q = 1.0 + sc.spread * rng.uniform(-1.0, 1.0, sc.candidates)
    k = TASKS[sc.task].n_outputs
    off = sc.class_bias * rng.standard_normal((sc.candidates, k)) if sc.class_bias else np.zeros((sc.candidates, k))
    return q, np.arange(sc.candidates) % sc.families, off


def simulate(sc: Scenario, lib: tuple[np.ndarray, np.ndarray, np.ndarray], n: int,
             rng) -> tuple[np.ndarray, np.ndarray]:
    """Labels (n,) and predictions (m, n, k) of the library on n fresh population rows."""
    q, fam, off = lib
    k, kind, m = TASKS[sc.task].n_outputs, TASKS[sc.task].kind, len(q)
    noise = (sc.shared * rng.standard_normal((1, n, k))
             + sc.family * rng.standard_normal((sc.families, n, k))[fam]
             + sc.own * rng.standard_normal((m, n, k)))
    if kind == "classes":
        y = rng.integers(0, k, n) if sc.classes is None else rng.choice(k, n, p=np.asarray(sc.classes) / sum(sc.classes))
        noise[:, np.arange(n), y] += 1.6 * q[:, None]
        noise += off[:, None, :]
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
    known = (*MODES, AUTO)
    unknown = [m for m in modes if m not in known]
    if unknown or not modes:
        raise EnsembleError(f"unknown or no mode(s) {', '.join(unknown)}; expected some of {', '.join(known)}")
    return tuple(modes)


def _replicate(sc: Scenario, pool: Pool, row_ids: list[str], pop: dict, y_pop: np.ndarray,
               pop_single: dict[str, float], modes: tuple[str, ...], settings: dict, seed: int) -> dict[str, tuple]:
    """mode -> (true gain, estimate, low, high) on one dev sample; ``auto`` also its un-nested
    estimate and the system chosen."""
    fixed = tuple(MODES) if AUTO in modes else modes
    ids = [row_ids[i] for i in pool.rows]
    folds, repeats, level = settings["folds"], settings["repeats"], settings["level"]
    sels, fits, out = {}, {}, {}
    for md in fixed:
        sels[md] = EnsembleSelector(sc.task, md, None, settings["steps"], settings["bags"], seed=seed).fit_pool(pool)
        w = sels[md].weights_
        truth = metrics.score(sc.task, ensemble_predictions(pop, w), y_pop) - pop_single[sels[md].best_single_]
        fits[md] = cross_fit_pool(pool, ids, sels[md], folds, repeats, seed, level)
        out[md] = (float(truth), fits[md].estimate, fits[md].low, fits[md].high)
    if AUTO in modes:
        chosen = choose({md: cf.estimate for md, cf in fits.items()})
        nested = nested_cross_fit(pool, ids, sels, fits, folds, repeats, seed, level, chosen)
        naive = 0.0 if chosen == SINGLE else fits[chosen].estimate
        truth = 0.0 if chosen == SINGLE else out[chosen][0]
        out[AUTO] = (truth, nested.estimate, nested.low, nested.high, naive, chosen)
    return out


def _auto_extra(rec: dict, modes: tuple[str, ...]) -> dict[str, Any]:
    """auto's row: the un-nested estimate's bias, the systems chosen, and its true gain against the
    best fixed mode's (by mean true gain), paired over the replications."""
    a = rec[AUTO]
    naive_err = np.asarray(a["naive"]) - np.asarray(a["true"])
    fixed = [md for md in modes if md != AUTO]
    out = {"naive_bias": float(naive_err.mean()),
           "chosen": {s: a["chosen"].count(s) for s in sorted(set(a["chosen"]))}}
    if fixed:
        best = max(fixed, key=lambda md: np.mean(rec[md]["true"]))
        d = np.asarray(a["true"]) - np.asarray(rec[best]["true"])
        out.update({"best_fixed": best, "vs_best_fixed": float(d.mean()),
                    "vs_best_fixed_se": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")})
    return out


def _scenario_rows(sc: Scenario, replications: int, modes: tuple[str, ...], seed: int, settings: dict,
                   progress: Progress) -> list[dict[str, Any]]:
    lib = library(sc, seed)
    tag = zlib.crc32(sc.name.encode())
    y_pop, P_pop = simulate(sc, lib, sc.n_pop, np.random.default_rng([seed, tag, 1]))
    ids = [f"cand{i:03d}" for i in range(sc.candidates)]
    pop = {c: P_pop[i] for i, c in enumerate(ids)}
    pop_single = {c: metrics.score(sc.task, pop[c], y_pop) for c in ids}
    row_ids = [f"r{i:05d}" for i in range(sc.n_dev)]
    rec = {md: {"err": [], "cov": [], "width": [], "true": [], "est": [], "naive": [], "chosen": []} for md in modes}
    for r in range(replications):
        y, P = simulate(sc, lib, sc.n_dev, np.random.default_rng([seed, tag, 2, r]))
        pool = Pool.from_aligned(sc.task, {c: P[i] for i, c in enumerate(ids)}, y)
        got = _replicate(sc, pool, row_ids, pop, y_pop, pop_single, modes, settings, seed * 1_000_003 + r)
        for md in modes:
            truth, est, low, high = got[md][:4]
            d = rec[md]
            d["err"].append(est - truth)
            d["cov"].append(low <= truth <= high)
            d["width"].append(high - low)
            d["true"].append(truth)
            d["est"].append(est)
            if md == AUTO:
                d["naive"].append(got[md][4])
                d["chosen"].append(got[md][5])
        progress.advance()
    return [{"scenario": sc.name, "task": sc.task, "candidates": sc.candidates, "spread": sc.spread,
             "n_dev": sc.n_dev, "mode": md, "replications": replications,
             **summarise(rec[md]["err"], rec[md]["cov"], rec[md]["width"], rec[md]["true"], rec[md]["est"],
                         settings["level"]),
             **(_auto_extra(rec, modes) if md == AUTO else {})}
            for md in modes]


def run_honesty(replications: int = 200, scenarios: Sequence[str | Scenario] | None = None,
                modes: Sequence[str] = HONESTY_MODES, seed: int = 0, folds: int = 5, repeats: int = 2,
                bags: int = 10, steps: int = 50, level: float = 0.95,
                progress: Progress = NULL) -> dict[str, Any]:
    """One row per (scenario, mode): coverage, bias, RMSE, width vs oracle width, true gain (module doc).

    ``bags`` defaults to 10 here (half of selection's 20) to keep the cost down: bagged selection
    is ``bags x (folds x repeats + 1)`` caruana runs per replication, and ``auto`` adds an inner
    cross-fit of every mode per outer fold (its nested estimate), about five times the fixed modes'
    cost together.
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
                        f"(df = {folds - 1}), {level:.0%}" + (" (auto: nested)" if AUTO in modes else ""),
            "targets": TARGETS, "rows": rows,
            "mean_true_gain": {md: float(np.mean([r["true_gain"] for r in rows if r["mode"] == md])) for md in modes}}
