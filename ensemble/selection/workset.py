"""Accuracy trials over many candidates: which rows they must look at (the open rows of the
current ensemble, and for Caruana a working copy of them kept across steps) and the chunked
counting over those rows (:func:`counts_with`).

A view is ``(R, T_R, S_R, y_R, base)``: the rows R to evaluate (None: all), the candidates' values
on them when a working copy holds them (None: gather from the pool's ``T``), the ensemble sum
and the labels on them, and the correct count on the rows outside R, which are all locked.
The functions read the pool's ``T`` (m, k, n), ``y``, shape, ``locked`` and the state's ``lock``
(the view of the current sum) and ``work`` (the working set ``(R, in R mask, buffer)``).
"""
from __future__ import annotations

import numpy as np

from .accuracy import correct_counts

CHUNK_ELEMS = 1 << 18          # elements per vectorised chunk (2 MiB of float64)
_WORKSET_BYTES = 1 << 29       # largest copy of candidate rows kept for Caruana steps (512 MiB)
_WORKSET_FRACTION = 0.25       # ... and only once at most this fraction of the rows is open


def view(pool, st, working_set: bool = True):
    """What to evaluate when one candidate is added to ``st`` (see the module doc).

    ``working_set=False`` (greedy): R is the open rows of the current S, gathered per candidate.
    ``working_set=True`` (caruana): R is a working set copied out of T and reused across steps:
    the rows open for the next 1 or 2 additions, so it stays valid for at least 2 steps. It is
    refreshed when it stops covering the open rows or is much larger than them (rows it holds
    are copied from its buffer, only new ones are read from T). Rows stay in ascending order,
    so label-sorted pools stay label-sorted.
    """
    if st.W == 0:
        return None, pool.T, st.S, pool.y, 0
    if st.lock is not None:
        return st.lock
    locked, good = pool.locked(st, 1)
    open1 = ~locked
    if working_set:
        _update_workset(pool, st, open1)
    if not working_set or st.work is None:
        st.lock = _direct(pool, st, open1, good)
    else:
        R, inR, buf = st.work
        st.lock = (R, buf[:, :, : len(R)], st.S[:, R], pool.y[R], int(good[~inR].sum()))
    return st.lock


def _direct(pool, st, open1: np.ndarray, good: np.ndarray):
    """The open rows, gathered from T per trial (all rows when most are open)."""
    if int(open1.sum()) > 0.75 * pool.n:
        return (None, pool.T, st.S, pool.y, 0)
    R = np.flatnonzero(open1)
    return (R, None, st.S[:, R], pool.y[R], int(good.sum()))


def _update_workset(pool, st, open1: np.ndarray) -> None:
    """Keep ``st.work`` covering the open rows, or drop it (None) where a copy does not pay."""
    n_open = int(open1.sum())
    w = st.work
    covered = w is not None and not open1[~w[1]].any()
    if covered and len(w[0]) <= 3 * n_open + 256:
        return
    need = open1 | ~pool.locked(st, 2)[0]
    u = int(need.sum())
    if w is None and (u > _WORKSET_FRACTION * pool.n or pool.m * pool.k * u * 8 > _WORKSET_BYTES):
        st.work = None
    elif w is not None and u > 2 * w[2].shape[2]:
        st.work = None                        # grew a lot: drop it, start over later
    else:
        R = np.flatnonzero(need)
        buf = None if w is None else w[2]
        if buf is None or buf.shape[2] < u:
            buf = np.empty((pool.m, pool.k, u), dtype=np.float64)
        _refresh(pool, buf, R, w)
        st.work = (R, need, buf)


def _refresh(pool, buf: np.ndarray, R: np.ndarray, old) -> None:
    """buf[:, :, :len(R)] = T[:, :, R], taking rows already in the old working set from its
    buffer (which may be ``buf`` itself) and only the others from T."""
    u = len(R)
    if old is None:
        from_old = np.zeros(u, dtype=bool)
    else:
        old_R, old_in, old_buf = old
        from_old = old_in[R]
        pos = np.searchsorted(old_R, R[from_old])
    fresh = R[~from_old]
    step = max(1, (8 * CHUNK_ELEMS) // (pool.k * max(u, 1)))
    tmp = np.empty((min(step, pool.m), pool.k, u), dtype=np.float64)
    for a in range(0, pool.m, step):
        b = min(a + step, pool.m)
        t = tmp[: b - a]
        if len(fresh):
            t[:, :, ~from_old] = pool.T[a:b][:, :, fresh]
        if from_old.any():
            t[:, :, from_old] = old_buf[a:b][:, :, pos]
        buf[a:b, :, :u] = t


def counts_with(pool, st, idx: np.ndarray, use_locks: bool) -> np.ndarray:
    """Correct counts of (S + c) / (W + 1) for all c in idx, in candidate chunks of at most
    :data:`CHUNK_ELEMS` elements over the rows of the view (``use_locks=False``: all rows)."""
    W1 = st.W + 1
    R, T_R, S, y, base = view(pool, st) if use_locks else (None, pool.T, st.S, pool.y, 0)
    u = S.shape[1]
    out = np.empty(len(idx), dtype=np.int64)
    if u == 0:
        out[:] = base
        return out
    step = max(1, CHUNK_ELEMS // (pool.k * u))
    full = len(idx) == pool.m and np.array_equal(idx, np.arange(pool.m))
    src = pool.T if T_R is None else T_R
    buf = np.empty((min(step, len(idx)), pool.k, u), dtype=np.float64)
    gbuf = np.empty_like(buf) if (T_R is None and R is not None) else None
    for a in range(0, len(idx), step):
        b = min(a + step, len(idx))
        block = src[a:b] if full else src[idx[a:b]]
        if gbuf is not None:                        # gather the open rows chunk by chunk
            block = np.take(block, R, axis=2, out=gbuf[: b - a])
        E = buf[: b - a]
        np.add(block, S, out=E)
        E /= W1
        out[a:b] = correct_counts(pool.kind, E, y)
    return out + base
