"""Accuracy counting for trial ensembles: rows predicted right, and rows no addition can change.

Ensemble predictions ``E`` are laid out (candidates, k, rows). sst: argmax (first maximum) ==
label; para: the rounded probability == label.
"""
from __future__ import annotations

import numpy as np


def correct_counts(kind: str, E: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rows predicted right, per candidate, for ensemble predictions E (c, k, u) and labels y (u,).

    sst: argmax (first maximum) == label, i.e. the label's value is > every class before it
    and >= every class after it. Rows sorted by label (as pools lay them out) go by label
    segment: two max-reductions and two comparisons; otherwise class by class.
    """
    if kind == "binary":
        return (np.round(E[:, 0, :]) == y).sum(axis=1)
    u = E.shape[2]
    if u > 1 and (y[1:] >= y[:-1]).all():
        return _counts_by_segment(E, y)
    return _counts_by_class(E, y)


def _counts_by_segment(E: np.ndarray, y: np.ndarray) -> np.ndarray:
    c, k, _ = E.shape
    cnt = np.zeros(c, dtype=np.int64)
    edges = np.searchsorted(y, np.arange(k + 1))
    for L in range(k):
        s0, s1 = edges[L], edges[L + 1]
        if s0 == s1:
            continue
        tv = E[:, L, s0:s1]
        ok = tv > E[:, :L, s0:s1].max(axis=1) if L > 0 else None
        if L < k - 1:
            ok2 = tv >= E[:, L + 1:, s0:s1].max(axis=1)
            ok = ok2 if ok is None else (ok & ok2)
        cnt += ok.sum(axis=1)
    return cnt


def _counts_by_class(E: np.ndarray, y: np.ndarray) -> np.ndarray:
    c, k, u = E.shape
    lin = y * u + np.arange(u)
    tv = E.reshape(c, k * u)[:, lin]
    bad = np.zeros((c, u), dtype=bool)
    tmp = np.empty((c, u), dtype=bool)
    for j in range(k):
        v = E[:, j, :]
        np.greater(v, tv, out=tmp)
        bad |= tmp
        lt = j < y            # class j comes before the label: a tie makes argmax pick j
        if lt.any():
            np.equal(v, tv, out=tmp)
            tmp &= lt
            bad |= tmp
    return u - bad.sum(axis=1)


def locked_rows(kind: str, S: np.ndarray, W: int, bounds: tuple[np.ndarray, np.ndarray], y: np.ndarray,
                h: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the ensemble sum ``S`` (weight ``W``) whose rounded prediction no choice of ``h``
    more candidates can change: (mask, mask of those predicted right).

    ``bounds``: per-row minimum and maximum over all candidates, each (k, n). Exact, not
    approximate: float addition, division by a positive number and rounding are monotone, so
    adding the per-row minimum (maximum) ``h`` times, in the order the real sums are formed,
    bounds every possible ensemble value from below (above).
    """
    lo_c, hi_c = bounds
    L = S + lo_c
    U = S + hi_c
    for _ in range(h - 1):
        L += lo_c
        U += hi_c
    L /= W + h
    U /= W + h
    if kind == "binary":
        lo, hi = np.round(L[0]), np.round(U[0])
        locked = lo == hi
        return locked, locked & (lo == y)
    k, n = S.shape
    t = np.argmax(L, axis=0)
    Lt = L[t, np.arange(n)]
    locked = np.ones(n, dtype=bool)
    for j in range(k):
        ok = np.where(j < t, Lt > U[j], Lt >= U[j]) | (t == j)
        locked &= ok
    return locked, locked & (t == y)
