"""``bench soup --simulate``: does the soup's held-out interval cover the true gain as often as it
says? A simulation with known truth, as ``bench honesty`` is for selection, run through the very
estimator ``ensemble soup`` uses (:func:`ensemble.soup.honest.soup_cross_fit`).

World. Candidates as in :mod:`ensemble.bench.honesty` (correlated noise ``shared * a + family * b
+ own * c``, quality ``q_i``), but each is kept as its pre-activation outputs ``z_i`` (logits for
``sst``, the logit for ``para``, the score for ``sts``). Averaging weights is modelled as averaging
those outputs (what averaging is to first order for models of one basin) plus a penalty for mixing
basins: a soup of members from ``f`` families adds ``basin * (f - 1)`` times fresh standard normal
noise per row (drawn from a seed of the member set: the same soup always predicts the same). Then
the task's link (softmax, sigmoid, identity).

Per replication a dev sample of the course's size is drawn; the greedy soup is chosen on all of it
and the best single candidate too; the true gain is the soup's score minus that single's, both on
``n_pop`` population rows no choice sees. Estimate and interval: ``soup_cross_fit`` on the dev sample.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .. import metrics
from ..errors import EnsembleError
from ..progress import NULL, Progress
from ..soup.honest import soup_cross_fit
from ..soup.path import best_first, greedy_path
from ..tasks import TASKS
from .honesty import COURSE_DEV_ROWS, summarise


@dataclass(frozen=True)
class SoupScenario:
    name: str
    task: str
    candidates: int
    families: int
    spread: float
    basin: float            # the penalty per extra family in a soup
    n_dev: int
    n_pop: int = 20000
    shared: float = 1.2
    family: float = 0.5
    own: float = 0.6


SOUP_SCENARIOS: dict[str, SoupScenario] = {
    s.name: s for s in (
        SoupScenario(f"{t}-m{m}-{label}", t, m, f, 0.1, basin, COURSE_DEV_ROWS[t])
        for t in ("sst", "para", "sts")
        for (m, f, basin, label) in ((5, 1, 0.0, "one-basin"), (8, 3, 0.8, "three-basins"))
    )
}


def _link(task: str, z: np.ndarray) -> np.ndarray:
    kind = TASKS[task].kind
    if kind == "classes":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-z)) if kind == "binary" else z


def draw(sc: SoupScenario, q: np.ndarray, fam: np.ndarray, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Labels (n,) and pre-activation outputs (m, n, k) of the library on n fresh rows."""
    k, kind, m = TASKS[sc.task].n_outputs, TASKS[sc.task].kind, len(q)
    noise = (sc.shared * rng.standard_normal((1, n, k)) + sc.family * rng.standard_normal((sc.families, n, k))[fam]
             + sc.own * rng.standard_normal((m, n, k)))
    if kind == "classes":
        y = rng.integers(0, k, n)
        noise[:, np.arange(n), y] += 1.6 * q[:, None]
        return y.astype(np.int64), noise
    if kind == "binary":
        y = (rng.random(n) < 0.37).astype(np.float64)
        return y, 2.2 * q[:, None, None] * (2 * y - 1)[None, :, None] + 1.6 * noise
    y = rng.uniform(0.0, 5.0, n)
    return y, 2.0 * q[:, None, None] * y[None, :, None] + 2.4 * noise


class SimSoups:
    """``soup_of`` over one sample's outputs ``Z`` (m, n, k), cached per member set."""

    def __init__(self, sc: SoupScenario, ids: list[str], Z: np.ndarray, fam: np.ndarray, seed: list[int]):
        self.sc, self.pos, self.Z, self.fam, self.seed = sc, {c: i for i, c in enumerate(ids)}, Z, fam, seed
        self.cache: dict[frozenset, dict[str, np.ndarray]] = {}
        self.singles = {c: {sc.task: _link(sc.task, Z[i])} for c, i in self.pos.items()}

    def soup_of(self, members: Sequence[str]) -> dict[str, np.ndarray]:
        key = frozenset(members)
        if len(key) == 1:
            return self.singles[next(iter(key))]
        if key not in self.cache:
            idx = sorted(self.pos[c] for c in key)
            z = self.Z[idx].mean(axis=0)
            extra = len(set(self.fam[idx].tolist())) - 1
            if extra and self.sc.basin:
                tag = zlib.crc32(",".join(sorted(key)).encode())
                z = z + self.sc.basin * extra * np.random.default_rng([*self.seed, tag]).standard_normal(z.shape)
            self.cache[key] = {self.sc.task: _link(self.sc.task, z)}
        return self.cache[key]


def _scenario(sc: SoupScenario, replications: int, seed: int, settings: dict, progress: Progress) -> dict[str, Any]:
    tag = zlib.crc32(sc.name.encode())
    rng = np.random.default_rng([seed, tag, 0])
    q, fam = 1.0 + sc.spread * rng.uniform(-1, 1, sc.candidates), np.arange(sc.candidates) % sc.families
    ids = [f"cand{i:02d}" for i in range(sc.candidates)]
    y_pop, Z_pop = draw(sc, q, fam, sc.n_pop, np.random.default_rng([seed, tag, 1]))
    pop = SimSoups(sc, ids, Z_pop, fam, [seed, tag, 1])
    row_ids = [f"r{i:05d}" for i in range(sc.n_dev)]
    err, cov, width, true, est, sizes = [], [], [], [], [], []
    for r in range(replications):
        y, Z = draw(sc, q, fam, sc.n_dev, np.random.default_rng([seed, tag, 2, r]))
        dev = SimSoups(sc, ids, Z, fam, [seed, tag, 2, r])
        lab = {sc.task: y}
        order = best_first([sc.task], dev.singles, lab)
        path = greedy_path([sc.task], order, dev.singles, dev.soup_of, lab)
        truth = (metrics.score(sc.task, pop.soup_of(path.members)[sc.task], y_pop)
                 - metrics.score(sc.task, pop.singles[order[0]][sc.task], y_pop))
        h = soup_cross_fit(sc.task, row_ids, y, dev.singles, dev.soup_of, **settings)
        err.append(h.estimate - truth)
        cov.append(h.low <= truth <= h.high)
        width.append(h.high - h.low)
        true.append(truth)
        est.append(h.estimate)
        sizes.append(len(path.members))
        progress.advance()
    return {"scenario": sc.name, "task": sc.task, "candidates": sc.candidates, "families": sc.families,
            "basin": sc.basin, "n_dev": sc.n_dev, "replications": replications,
            "mean_members": float(np.mean(sizes)), **summarise(err, cov, width, true, est, settings["level"])}


def run_soup_honesty(replications: int = 100, scenarios: Sequence[str] | None = None, seed: int = 0,
                     folds: int = 5, repeats: int = 2, level: float = 0.95, progress: Progress = NULL) -> dict[str, Any]:
    """One row per scenario: coverage, bias, RMSE, width against the oracle width, true gain."""
    if replications < 2:
        raise EnsembleError("the soup simulation needs at least 2 replications (the oracle width is an SD)")
    names = list(SOUP_SCENARIOS) if scenarios is None else list(scenarios)
    unknown = [n for n in names if n not in SOUP_SCENARIOS]
    if unknown or not names:
        raise EnsembleError(f"unknown or no scenario(s) {', '.join(unknown)}; expected some of "
                            f"{', '.join(SOUP_SCENARIOS)}")
    settings = {"folds": folds, "repeats": repeats, "seed": seed, "level": level}
    progress.start("soup honesty simulation", replications * len(names))
    rows = [_scenario(SOUP_SCENARIOS[n], replications, seed, settings, progress) for n in names]
    progress.stop()
    return {"replications": replications, "seed": seed, "settings": settings, "rows": rows,
            "interval": f"repeated {folds}-fold cross-fitting x {repeats}, Nadeau-Bengio corrected resampled t "
                        f"(df = {folds - 1}), {level:.0%}"}
