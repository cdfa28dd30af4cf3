"""Pearson r of running ensembles from sums (:func:`ensemble.metrics.pearson_from_sums`).

On centred predictions ``Xc`` (m, n) and labels ``yc``: an ensemble's centred sum ``Sc`` needs only
``sum(Sc)``, ``Sc.Sc`` and ``Sc.yc``; adding candidate c changes them by ``sum(c)``, ``2 Sc.c + c.c``
and ``c.yc``. For all candidates at once ``Xc @ Sc`` is kept up to date by one cached
matrix-vector product (a Gram column) per distinct member added.
"""
from __future__ import annotations

import numpy as np

from ..metrics import pearson_from_sums


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """Single-threaded float64 dot product (numpy's own loop: no BLAS threads on tiny work)."""
    return float(np.einsum("i,i->", a, b))


class PearsonRun:
    """One running ensemble's centred sum ``Sc``, its sums, and ``SX = Xc @ Sc`` once needed."""

    __slots__ = ("Sc", "sums", "SX")

    def __init__(self, n: int):
        self.Sc = np.zeros(n, dtype=np.float64)
        self.sums = (0.0, 0.0, 0.0)   # sum(Sc), Sc.Sc, Sc.yc
        self.SX = None                # caruana: Xc @ Sc for all candidates, kept up to date


class PearsonSums:
    """The candidates' centred predictions and their sums, for one pool."""

    def __init__(self, X: np.ndarray, y: np.ndarray):
        self.n = X.shape[1]
        self.Xc = X - X.mean(axis=1, keepdims=True)
        self.yc = y - y.mean()
        self.sy = float(self.yc.sum())
        self.syy = dot(self.yc, self.yc)
        self.sc = self.Xc.sum(axis=1)
        self.scc = np.einsum("ij,ij->i", self.Xc, self.Xc)
        self.scy = np.einsum("ij,j->i", self.Xc, self.yc)
        self._cols: dict[int, np.ndarray] = {}

    def gram_col(self, j: int) -> np.ndarray:
        """Xc @ Xc[j] (all candidates' dot products with candidate j), cached."""
        if j not in self._cols:
            self._cols[j] = self.Xc @ self.Xc[j]
        return self._cols[j]

    def add(self, run: PearsonRun, j: int) -> None:
        run.Sc += self.Xc[j]
        run.sums = (float(run.Sc.sum()), dot(run.Sc, run.Sc), dot(run.Sc, self.yc))
        if run.SX is not None:
            run.SX += self.gram_col(j)

    def own(self) -> np.ndarray:
        """Every candidate's own r."""
        return np.asarray(pearson_from_sums(self.n, self.sc, self.sy, self.scc, self.syy, self.scy),
                          dtype=np.float64).reshape(len(self.sc))

    def with_all(self, run: PearsonRun, idx: np.ndarray) -> np.ndarray:
        """r of the ensemble with each candidate in ``idx`` added (vectorised)."""
        if run.SX is None:
            run.SX = self.Xc @ run.Sc             # one matrix-vector product for all
        SX = run.SX[idx]
        s_x, s_xx, s_xy = run.sums
        sx = s_x + self.sc[idx]
        sxx = s_xx + 2.0 * SX + self.scc[idx]
        sxy = s_xy + self.scy[idx]
        return np.asarray(pearson_from_sums(self.n, sx, self.sy, sxx, self.syy, sxy), dtype=np.float64)

    def with_one(self, run: PearsonRun, j: int) -> float:
        """r of the ensemble with candidate j added."""
        s_x, s_xx, s_xy = run.sums
        sx = s_x + self.sc[j]
        sxx = s_xx + 2.0 * dot(self.Xc[j], run.Sc) + self.scc[j]
        sxy = s_xy + self.scy[j]
        return float(pearson_from_sums(self.n, sx, self.sy, sxx, self.syy, sxy))
