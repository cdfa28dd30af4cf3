"""Per-task ensemble selection over cached, unrounded dev predictions (numpy/scipy only).

This module sees arrays and ids, never models: no torch, typer, rich or pandas here.

Conventions
-----------
Per task, a candidate's unrounded predictions are a float array of shape ``(n, k)``: ``sst`` class
probabilities (k=5), ``para`` the paraphrase probability (k=1), ``sts`` the raw score (k=1).
An ensemble with integer weights ``w_i`` predicts ``sum_i w_i * p_i / sum_i w_i`` (float64), which
:func:`ensemble_predictions` computes; the metric is :func:`ensemble.metrics.score` on it.

Two modes:

``greedy`` (default, the SerBERTus report's method)
    Candidates are ranked best-first by their own dev score; ties by secondary loss
    (:func:`ensemble.metrics.secondary_loss`, lower first), then by candidate id (ascending
    string order). The first is the ensemble; each next candidate joins (weight 1) only if the
    equal-weight average with it scores ``>=`` the current ensemble. ``max_size`` bounds the number
    of members; once reached, the rest are recorded as "max size reached".

``caruana`` (Caruana et al. 2004)
    Forward selection *with replacement* for ``steps`` steps over all candidates: each step adds
    the candidate whose addition maximises the dev score of the weighted average (ties: lower
    secondary loss of the resulting ensemble, then candidate id). The shortest prefix of the
    steps that reaches the best dev score is kept; weights are the counts. ``max_size`` bounds the
    number of *distinct* members: once that many are in, only current members can be added again
    (so the total weight is bounded by ``steps``, the distinct members by ``max_size``).

Score comparisons: accuracies compare exactly (they are counts over n); Pearson r is compared
after rounding to 12 decimals (``np.round(r, 12)``), so two ensembles whose r differ only by
float rounding tie (a duplicate candidate ties and is kept in greedy mode).

Speed: running float64 sums. Adding candidate ``c`` to an ensemble with sum ``S`` and weight ``W``
gives ``(S + c) / (W + 1)``, which for greedy is bit for bit what :func:`ensemble_predictions`
computes (Caruana's repeated members may differ from it in the last bit). Caruana mode scores all
candidates per step in one vectorised pass. For accuracy: in candidate chunks, only over the rows
that some candidate could still change (rows whose rounded prediction no candidate can move are
counted once; the test is exact, from per-row min/max over all candidates and the monotonicity of
float addition, division and rounding), with those rows kept in a compact working copy across
steps; sst rows are laid out in label order so "argmax == label" is two max-reductions per label.
For Pearson: from sums (:func:`ensemble.metrics.pearson_from_sums`) on centred predictions, with
``X @ S`` kept up to date by one cached matrix-vector product per distinct member added.

Honest estimate: :func:`cross_fit` splits the dev rows into two seeded halves (a function of
``(seed, repeat)`` and the sorted ids only), selects on one half and scores on the other, both
ways, ``repeats`` times; it reports the in-sample gain, the mean held-out gain and a bootstrap 95%
interval of that mean.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from . import metrics
from .errors import EnsembleError
from .metrics import pearson_from_sums
from .tasks import TASKS, get_task

__all__ = [
    "MODES",
    "PEARSON_DECIMALS",
    "Ranked",
    "Step",
    "Fold",
    "CrossFit",
    "TaskInput",
    "TaskSelection",
    "EnsembleSelector",
    "select",
    "cross_fit",
    "crossfit_split",
    "score_on",
    "ensemble_predictions",
    "pearson_from_sums",
    "score_key",
    "bench_select",
]

MODES = ("greedy", "caruana")
PEARSON_DECIMALS = 12
BOOTSTRAP_RESAMPLES = 2000
_CHUNK_ELEMS = 1 << 18          # elements per vectorised chunk (2 MiB of float64)
_WORKSET_BYTES = 1 << 29        # largest copy of candidate rows kept for Caruana steps (512 MiB)
_WORKSET_FRACTION = 0.25       # ... and only once at most this fraction of the rows is open
_EXAMPLES = 3                   # example ids quoted in messages


# --------------------------------------------------------------------------------------------
# small helpers


def score_key(task: str, score: float):
    """The value scores are compared by: the accuracy itself, or Pearson r rounded to 12 decimals."""
    if TASKS[task].metric == "pearson":
        return float(np.round(score, PEARSON_DECIMALS))
    return float(score)


def _keys(task: str, scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if TASKS[task].metric == "pearson":
        return np.round(scores, PEARSON_DECIMALS)
    return scores


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Single-threaded float64 dot product (numpy's own loop: no BLAS threads on tiny work)."""
    return float(np.einsum("i,i->", a, b))


def _fmt(x: float) -> str:
    x = abs(float(x))
    return f"{x:.4f}" if x >= 1e-4 else f"{x:.2e}"


def _examples(items) -> str:
    items = sorted(items)
    shown = ", ".join(repr(i) for i in items[:_EXAMPLES])
    return shown + (", ..." if len(items) > _EXAMPLES else "")





def _check_options(mode: str, max_size, steps, repeats=0) -> None:
    if mode not in MODES:
        raise EnsembleError(f"unknown selection mode {mode!r}; expected one of {', '.join(MODES)}")
    if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, (int, np.integer))
                                 or max_size < 1):
        raise EnsembleError(f"max_size must be a positive integer or None (no bound), got {max_size!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise EnsembleError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 0:
        raise EnsembleError(f"repeats must be a non-negative integer, got {repeats!r}")


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise EnsembleError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_labels(task: str, labels, n: int | None = None) -> np.ndarray:
    """Labels as the metric wants them: int64 classes for sst, 0.0/1.0 for para, floats for sts."""
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise EnsembleError(f"{task}: labels must be a 1-D array, got shape {y.shape}")
    if n is not None and len(y) != n:
        raise EnsembleError(f"{task}: {len(y)} labels for {n} prediction rows")
    if len(y) == 0:
        raise EnsembleError(f"{task}: no labelled rows")
    try:
        y = y.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise EnsembleError(f"{task}: labels must be numbers ({exc})") from None
    if not np.isfinite(y).all():
        raise EnsembleError(f"{task}: {int((~np.isfinite(y)).sum())} labels are missing or not finite")
    kind = TASKS[task].kind
    if kind == "classes":
        bad = (y != np.round(y)) | (y < 0) | (y >= TASKS[task].n_outputs)
        if bad.any():
            raise EnsembleError(
                f"{task}: labels must be classes 0..{TASKS[task].n_outputs - 1}; "
                f"got {_examples({float(v) for v in y[bad]})}"
            )
        return y.astype(np.int64)
    if kind == "binary":
        bad = (y != 0.0) & (y != 1.0)
        if bad.any():
            raise EnsembleError(f"{task}: labels must be 0 or 1; got {_examples({float(v) for v in y[bad]})}")
    return y


def _as_2d(task: str, cid: str, arr, n: int | None = None) -> np.ndarray:
    k = TASKS[task].n_outputs
    try:
        a = np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise EnsembleError(f"{task}: candidate {cid!r}: predictions are not numbers ({exc})") from None
    if a.ndim == 1 and k == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] != k or (n is not None and a.shape[0] != n):
        want = f"({n if n is not None else 'n'}, {k})"
        raise EnsembleError(
            f"{task}: candidate {cid!r}: predictions have shape {a.shape}, expected {want} "
            f"({', '.join(TASKS[task].prediction_columns)})"
        )
    return a


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(obj, "to_dict") and not isinstance(obj, _Plain):
            return obj.to_dict()
        return {f.name: _jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


class _Plain:
    """Marker: dataclasses whose ``to_dict`` is the plain field dump."""

    def to_dict(self) -> dict:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


# --------------------------------------------------------------------------------------------
# results


@dataclass
class Ranked(_Plain):
    """One candidate in the best-first order by own dev score."""

    rank: int
    candidate: str
    own_score: float
    secondary_loss: float | None   # computed only where the own score is tied (it is only a tie-break)
    tie_break: str | None          # None: no tie on own score; "secondary loss" or "id": what decided it


@dataclass
class Step(_Plain):
    """One step of the selection trajectory."""

    step: int
    candidate: str
    own_score: float
    ensemble_score: float | None   # the ensemble's dev score with this candidate added (None: not tried)
    change: float | None           # ensemble_score minus the current ensemble's score (None: first step)
    accepted: bool                 # greedy: joined; caruana: inside the kept prefix
    reason: str
    tie_break: str | None = None   # caruana: how a tie between candidates for this step was decided


@dataclass
class Fold(_Plain):
    """One cross-fit fold: select on one half of dev, score on the other."""

    repeat: int
    fold: str                      # "a->b" (select on half a, score on b) or "b->a"
    n_select: int
    n_heldout: int
    members: list[str]
    weights: dict[str, int]
    best_single: str               # best single candidate on the selection half
    selection_gain: float          # ensemble minus best single, both on the selection half
    heldout_ensemble_score: float
    heldout_single_score: float
    heldout_gain: float


@dataclass
class CrossFit(_Plain):
    """Cross-fitted (honest) estimate of what the ensemble gains over the best single candidate."""

    task: str
    mode: str
    repeats: int
    seed: int
    in_sample_gain: float                          # full-dev ensemble minus best single, on full dev
    heldout_gain_mean: float | None
    heldout_gain_ci: tuple[float, float] | None    # bootstrap 95% interval of the mean held-out gain
    heldout_ensemble_mean: float | None
    heldout_single_mean: float | None
    folds: list[Fold] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class TaskInput:
    """What the CLI hands over for one task.

    ``candidates``: candidate id -> (row ids, predictions ``(len(row ids), k)``); rows are joined
    to ``dev_ids`` by id, never by position. ``params``: candidate id -> parameter count (optional).
    """

    task: str
    dev_ids: list[str]
    dev_labels: np.ndarray
    candidates: dict[str, tuple[list[str], np.ndarray]]
    params: dict[str, int] = field(default_factory=dict)


@dataclass
class TaskSelection(_Plain):
    """The selected ensemble for one task, how it was chosen and what it is honestly worth."""

    task: str
    mode: str
    metric: str
    n_rows: int
    n_candidates: int
    max_size: int | None
    steps: int | None
    members: list[str]
    weights: dict[str, int]
    trajectory: list[Step]
    order: list[Ranked]
    best_single: tuple[str, float]
    ensemble_dev_score: float
    in_sample_gain: float
    heldout_gain_mean: float | None
    heldout_gain_ci: tuple[float, float] | None
    heldout: CrossFit | None
    rejected: list[tuple[str, str]]
    params_total: int | None
    notes: list[str]

    def to_dict(self) -> dict:
        d = {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}
        d["best_single"] = {"id": self.best_single[0], "score": _jsonable(self.best_single[1])}
        d["rejected"] = [{"id": cid, "reason": why} for cid, why in self.rejected]
        return d


# --------------------------------------------------------------------------------------------
# the fast scorer


class _State:
    """A running ensemble: float64 sum of member predictions (k, n), total weight, centred sum."""

    __slots__ = ("S", "W", "Sc", "sums", "SX", "lock", "work")

    def __init__(self, k: int, n: int, pearson: bool):
        self.S = np.zeros((k, n), dtype=np.float64)
        self.W = 0
        self.Sc = np.zeros(n, dtype=np.float64) if pearson else None
        self.sums = (0.0, 0.0, 0.0)   # pearson: sum(Sc), Sc.Sc, Sc.yc
        self.SX = None                # pearson, caruana: Xc @ Sc for all candidates, kept up to date
        self.lock = None          # accuracy: what to evaluate for the current S (see _Pool._view)
        self.work = None          # accuracy: working set of rows kept across steps


class _Pool:
    """Aligned candidate predictions for one task, stored as ``T`` of shape (m, k, n), float64.

    ``ids`` are the candidate ids in ascending order (row i of ``T`` is ``ids[i]``).
    """

    def __init__(self, task: str, ids: list[str], T: np.ndarray, y: np.ndarray):
        self.task = task
        self.kind = TASKS[task].kind
        self.pearson = TASKS[task].metric == "pearson"
        self.ids = list(ids)
        self.T = T
        self.y = y
        self.m, self.k, self.n = T.shape
        self.rows = np.arange(self.n)     # original row of each pool row (pools may reorder rows)
        self._own = None
        self._loss = None
        self._bounds = None
        self._pear = None
        self._cols = None

    # -- construction
    @classmethod
    def from_aligned(cls, task: str, preds: Mapping[str, np.ndarray], labels) -> "_Pool":
        get_task(task)
        if not preds:
            raise EnsembleError(f"no candidate has dev predictions for task {task}")
        y = _check_labels(task, labels)
        n = len(y)
        ids = sorted(preds)
        T = np.empty((len(ids), TASKS[task].n_outputs, n), dtype=np.float64)
        for i, cid in enumerate(ids):
            a = _as_2d(task, cid, preds[cid], n)
            if not np.isfinite(a).all():
                raise EnsembleError(f"{task}: candidate {cid!r} has non-finite predictions")
            T[i] = a.T
        pool = cls(task, ids, T, y)
        if TASKS[task].kind == "classes":
            pool = pool.take_rows(np.argsort(y, kind="stable"))
        return pool

    def take_rows(self, rows: np.ndarray) -> "_Pool":
        """A pool of these rows (``rows`` index this pool); ``.rows`` maps back to the original rows."""
        sub = _Pool(self.task, self.ids, np.take(self.T, rows, axis=2), self.y[rows])
        sub.rows = self.rows[rows]
        return sub

    def empty_state(self) -> _State:
        return _State(self.k, self.n, self.pearson)

    def add(self, st: _State, j: int) -> None:
        st.S += self.T[j]
        st.W += 1
        st.lock = None
        if self.pearson:
            p = self._pearson()
            st.Sc += p["Xc"][j]
            st.sums = (float(st.Sc.sum()), _dot(st.Sc, st.Sc), _dot(st.Sc, p["yc"]))
            if st.SX is not None:
                st.SX += self._gram_col(j)

    # -- precomputations
    def _pearson(self) -> dict:
        if self._pear is None:
            X = self.T[:, 0, :]
            Xc = X - X.mean(axis=1, keepdims=True)
            yc = self.y - self.y.mean()
            self._pear = {
                "Xc": Xc, "yc": yc, "sy": float(yc.sum()), "syy": _dot(yc, yc),
                "sc": Xc.sum(axis=1), "scc": np.einsum("ij,ij->i", Xc, Xc), "scy": np.einsum("ij,j->i", Xc, yc),
            }
        return self._pear

    def _gram_col(self, j: int) -> np.ndarray:
        """Xc @ Xc[j] (all candidates' dot products with candidate j), cached."""
        if self._cols is None:
            self._cols = {}
        if j not in self._cols:
            p = self._pearson()
            self._cols[j] = p["Xc"] @ p["Xc"][j]
        return self._cols[j]

    def _bound(self):
        if self._bounds is None:
            self._bounds = (self.T.min(axis=0), self.T.max(axis=0))
        return self._bounds

    # -- accuracy counting on prepared ensemble predictions E (c, k, u)
    def _counts_dense(self, E: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        """Rows predicted right, per candidate, for ensemble predictions E (c, k, u) and labels y (u,).

        sst: argmax (first maximum) == label, i.e. the label's value is > every class before it
        and >= every class after it. Rows sorted by label (as pools lay them out) go by label
        segment: two max-reductions and two comparisons; otherwise class by class.
        """
        y = self.y if y is None else y
        if self.kind == "binary":
            return (np.round(E[:, 0, :]) == y).sum(axis=1)
        c, k, u = E.shape
        if u > 1 and (y[1:] >= y[:-1]).all():
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

    def _locked(self, st: _State, h: int = 1):
        """Rows whose rounded prediction no choice of ``h`` more candidates can change:
        (mask, mask of those predicted right).

        Exact, not approximate: float addition, division by a positive number and rounding are
        monotone, so adding the per-row minimum (maximum) over all candidates ``h`` times, in the
        order the real sums are formed, bounds every possible ensemble value from below (above).
        """
        lo_c, hi_c = self._bound()
        L = st.S + lo_c
        U = st.S + hi_c
        for _ in range(h - 1):
            L += lo_c
            U += hi_c
        L /= st.W + h
        U /= st.W + h
        if self.kind == "binary":
            lo, hi = np.round(L[0]), np.round(U[0])
            locked = lo == hi
            return locked, locked & (lo == self.y)
        t = np.argmax(L, axis=0)
        Lt = L[t, np.arange(self.n)]
        locked = np.ones(self.n, dtype=bool)
        for j in range(self.k):
            ok = np.where(j < t, Lt > U[j], Lt >= U[j]) | (t == j)
            locked &= ok
        return locked, locked & (t == self.y)

    # -- vectorised: scores of (S + c) / (W + 1) for all c in idx
    def scores_with(self, st: _State, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        if st.W == 0:
            return self.own_scores()[idx]
        if self.pearson:
            p = self._pearson()
            if st.SX is None:
                st.SX = p["Xc"] @ st.Sc             # one matrix-vector product for all
            SX = st.SX[idx]
            s_x, s_xx, s_xy = st.sums
            sx = s_x + p["sc"][idx]
            sxx = s_xx + 2.0 * SX + p["scc"][idx]
            sxy = s_xy + p["scy"][idx]
            return np.asarray(pearson_from_sums(self.n, sx, p["sy"], sxx, p["syy"], sxy), dtype=np.float64)
        return self._acc_with(st, idx, use_locks=True) / self.n

    def _view(self, st: _State, working_set: bool = True):
        """What to evaluate when one candidate is added: (rows R or None for all, T[:, :, R] or None,
        S[:, R], y[R], correct count on the rows outside R, which are all locked).

        ``working_set=False`` (greedy): R is the open rows of the current S, gathered per candidate.
        ``working_set=True`` (caruana): R is a working set copied out of T and reused across steps:
        the rows open for the next 1 or 2 additions, so it stays valid for at least 2 steps. It is
        refreshed when it stops covering the open rows or is much larger than them (rows it holds
        are copied from its buffer, only new ones are read from T). Rows stay in ascending order,
        so label-sorted pools stay label-sorted.
        """
        if st.W == 0:
            return None, self.T, st.S, self.y, 0
        if st.lock is not None:
            return st.lock
        locked, good = self._locked(st, 1)
        open1 = ~locked
        n_open = int(open1.sum())

        def direct():
            if n_open > 0.75 * self.n:
                return (None, self.T, st.S, self.y, 0)
            R = np.flatnonzero(open1)
            return (R, None, st.S[:, R], self.y[R], int(good.sum()))

        if not working_set:
            st.lock = direct()
            return st.lock
        w = st.work                                   # (R, inR, buffer) or None
        covered = w is not None and not open1[~w[1]].any()
        if not covered or len(w[0]) > 3 * n_open + 256:
            need = open1 | ~self._locked(st, 2)[0]
            u = int(need.sum())
            if w is None and (u > _WORKSET_FRACTION * self.n or self.m * self.k * u * 8 > _WORKSET_BYTES):
                st.work = None
            elif w is not None and u > 2 * w[2].shape[2]:
                st.work = None                        # grew a lot: drop it, start over later
            else:
                R = np.flatnonzero(need)
                buf = None if w is None else w[2]
                if buf is None or buf.shape[2] < u:
                    buf = np.empty((self.m, self.k, u), dtype=np.float64)
                self._refresh(buf, R, w)
                st.work = (R, need, buf)
        if st.work is None:
            st.lock = direct()
        else:
            R, inR, buf = st.work
            st.lock = (R, buf[:, :, : len(R)], st.S[:, R], self.y[R], int(good[~inR].sum()))
        return st.lock

    def _refresh(self, buf: np.ndarray, R: np.ndarray, old) -> None:
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
        step = max(1, (8 * _CHUNK_ELEMS) // (self.k * max(u, 1)))
        tmp = np.empty((min(step, self.m), self.k, u), dtype=np.float64)
        for a in range(0, self.m, step):
            b = min(a + step, self.m)
            t = tmp[: b - a]
            if len(fresh):
                t[:, :, ~from_old] = self.T[a:b][:, :, fresh]
            if from_old.any():
                t[:, :, from_old] = old_buf[a:b][:, :, pos]
            buf[a:b, :, :u] = t

    def _acc_with(self, st: _State, idx: np.ndarray, use_locks: bool) -> np.ndarray:
        """Correct counts of (S + c) / (W + 1) for all c in idx (candidate chunks, vectorised)."""
        W1 = st.W + 1
        R, T_R, S, y, base = self._view(st) if use_locks else (None, self.T, st.S, self.y, 0)
        u = S.shape[1]
        out = np.empty(len(idx), dtype=np.int64)
        if u == 0:
            out[:] = base
            return out
        step = max(1, _CHUNK_ELEMS // (self.k * u))
        full = len(idx) == self.m and np.array_equal(idx, np.arange(self.m))
        src = self.T if T_R is None else T_R
        buf = np.empty((min(step, len(idx)), self.k, u), dtype=np.float64)
        gbuf = np.empty_like(buf) if (T_R is None and R is not None) else None
        for a in range(0, len(idx), step):
            b = min(a + step, len(idx))
            block = src[a:b] if full else src[idx[a:b]]
            if gbuf is not None:                        # gather the open rows chunk by chunk
                block = np.take(block, R, axis=2, out=gbuf[: b - a])
            E = buf[: b - a]
            np.add(block, S, out=E)
            E /= W1
            out[a:b] = self._counts_dense(E, y)
        return out + base

    def score_with(self, st: _State, j: int) -> float:
        """Score of (S + c_j) / (W + 1) for one candidate."""
        if self.pearson:
            p = self._pearson()
            s_x, s_xx, s_xy = st.sums
            sx = s_x + p["sc"][j]
            sxx = s_xx + 2.0 * _dot(p["Xc"][j], st.Sc) + p["scc"][j]
            sxy = s_xy + p["scy"][j]
            return float(pearson_from_sums(self.n, sx, p["sy"], sxx, p["syy"], sxy))
        R, T_R, S, y, base = self._view(st, working_set=False)
        if S.shape[1] == 0:
            return base / self.n
        E = (S + (self.T[j] if R is None else self.T[j][:, R])) / (st.W + 1)
        return float(self._counts_dense(E[None], y)[0] + base) / self.n

    def loss_with(self, st: _State, j: int) -> float:
        """Secondary loss of (S + c_j) / (W + 1)."""
        E = (st.S + self.T[j]) / (st.W + 1)
        return metrics.secondary_loss(self.task, E.T, self.y)

    # -- own scores and losses, all candidates
    def own_scores(self) -> np.ndarray:
        if self._own is None:
            if self.pearson:
                p = self._pearson()
                self._own = np.asarray(
                    pearson_from_sums(self.n, p["sc"], p["sy"], p["scc"], p["syy"], p["scy"]), dtype=np.float64
                ).reshape(self.m)
            else:
                self._own = self._acc_with(self.empty_state(), np.arange(self.m), use_locks=False) / self.n
        return self._own

    def own_loss(self, j: int) -> float:
        """Secondary loss of candidate j alone (computed on demand: only ties need it)."""
        if self._loss is None:
            self._loss = {}
        if j not in self._loss:
            self._loss[j] = metrics.secondary_loss(self.task, self.T[j].T, self.y)
        return self._loss[j]

    def ranking(self) -> list[int]:
        """Candidates best-first: own score desc, then secondary loss asc, then id asc."""
        keys = _keys(self.task, self.own_scores())
        uniq, counts = np.unique(keys, return_counts=True)
        shared = set(uniq[counts > 1].tolist())
        loss = [self.own_loss(i) if keys[i] in shared else 0.0 for i in range(self.m)]
        return sorted(range(self.m), key=lambda i: (-keys[i], loss[i], self.ids[i]))

    def ensemble(self, weights: Mapping[str, int], rows: np.ndarray | None = None) -> np.ndarray:
        """Weighted average (n, k) of members given by id, in ``weights`` order (as ensemble_predictions)."""
        pos = {cid: i for i, cid in enumerate(self.ids)}
        preds = {cid: (self.T[pos[cid]] if rows is None else self.T[pos[cid]][:, rows]).T for cid in weights}
        return ensemble_predictions(preds, weights)


# --------------------------------------------------------------------------------------------
# the algorithms


def _ranked(pool: _Pool, order: list[int]) -> list[Ranked]:
    keys = _keys(pool.task, pool.own_scores())
    own = pool.own_scores()
    out = []
    for r, i in enumerate(order, 1):
        same = np.flatnonzero(keys == keys[i])
        if len(same) == 1:
            out.append(Ranked(r, pool.ids[i], float(own[i]), None, None))
            continue
        li = pool.own_loss(i)
        tb = "id" if any(pool.own_loss(int(j)) == li for j in same if j != i) else "secondary loss"
        out.append(Ranked(r, pool.ids[i], float(own[i]), float(li), tb))
    return out


def _greedy(pool: _Pool, order: list[int], max_size: int | None):
    own = pool.own_scores()
    st = pool.empty_state()
    members: list[int] = []
    traj: list[Step] = []
    cur = cur_key = None
    for step, i in enumerate(order, 1):
        cid, own_i = pool.ids[i], float(own[i])
        if step == 1:
            pool.add(st, i)
            members.append(i)
            cur, cur_key = own_i, score_key(pool.task, own_i)
            traj.append(Step(step, cid, own_i, own_i, None, True, "best own score: starts the ensemble"))
            continue
        if max_size is not None and len(members) >= max_size:
            traj.append(Step(step, cid, own_i, None, None, False, "max size reached"))
            continue
        s = pool.score_with(st, i)
        key = score_key(pool.task, s)
        change = 0.0 if key == cur_key else s - cur
        if key > cur_key:
            reason, ok = f"improves by {_fmt(change)}", True
        elif key == cur_key:
            reason, ok = "ties (kept: >=)", True
        else:
            reason, ok = f"lowers by {_fmt(change)}", False
        traj.append(Step(step, cid, own_i, s, change, ok, reason))
        if ok:
            pool.add(st, i)
            members.append(i)
            cur, cur_key = s, key
    ids = [pool.ids[i] for i in members]
    return ids, {cid: 1 for cid in ids}, traj, cur


def _caruana(pool: _Pool, order: list[int], max_size: int | None, steps: int):
    own = pool.own_scores()
    st = pool.empty_state()
    all_idx = np.arange(pool.m)
    counts: dict[int, int] = {}
    first: list[int] = []          # members in order of first addition
    picks: list[int] = []
    traj: list[Step] = []
    scores: list[float] = []
    cur = None
    for t in range(1, steps + 1):
        if max_size is not None and len(counts) >= max_size:
            elig = np.array(sorted(counts), dtype=np.int64)
        else:
            elig = all_idx
        if t == 1:
            best, tie_note = order[0], None
            sc = float(own[best])
        else:
            s_all = pool.scores_with(st, elig)
            k_all = _keys(pool.task, s_all)
            top = k_all.max()
            tied = elig[k_all == top]
            if len(tied) == 1:
                best, tie_note = int(tied[0]), None
            else:
                cand = sorted((pool.loss_with(st, int(j)), pool.ids[int(j)], int(j)) for j in tied)
                best = cand[0][2]
                by = "id" if cand[0][0] == cand[1][0] else "secondary loss"
                tie_note = f"{by} among {len(tied)} tied"
            sc = float(s_all[np.flatnonzero(elig == best)[0]])
        pool.add(st, best)
        if best not in counts:
            first.append(best)
        counts[best] = counts.get(best, 0) + 1
        picks.append(best)
        if t == 1:
            change, reason = None, "best single: starts the ensemble"
        else:
            key, cur_key = score_key(pool.task, sc), score_key(pool.task, cur)
            change = 0.0 if key == cur_key else sc - cur
            if key > cur_key:
                reason = f"improves by {_fmt(change)}"
            elif key == cur_key:
                reason = "ties"
            else:
                reason = f"lowers by {_fmt(change)} (best available)"
            if counts[best] > 1:
                reason += f"; weight now {counts[best]}"
        traj.append(Step(t, pool.ids[best], float(own[best]), sc, change, True, reason, tie_note))
        scores.append(sc)
        cur = sc
    keys = [score_key(pool.task, s) for s in scores]
    keep = keys.index(max(keys)) + 1       # shortest prefix reaching the best score
    for s in traj[keep:]:
        s.accepted = False
        s.reason += f"; dropped: after the best prefix (step {keep})"
    kept: dict[int, int] = {}
    for j in picks[:keep]:
        kept[j] = kept.get(j, 0) + 1
    members = [pool.ids[j] for j in first if j in kept]
    weights = {pool.ids[j]: kept[j] for j in first if j in kept}
    return members, weights, traj, scores[keep - 1]


class EnsembleSelector:
    """Greedy / Caruana ensemble selection for one task (auto-sklearn style: fit, then read ``*_``).

    Parameters: ``task``; ``mode`` ("greedy" or "caruana"); ``max_size`` (greedy: members;
    caruana: distinct members; None = no bound); ``steps`` (caruana only).

    After :meth:`fit`: ``candidates_`` (ids, ascending), ``order_`` (list of :class:`Ranked`,
    best-first with tie-breaks), ``trajectory_`` (list of :class:`Step`), ``members_`` (ids in
    order added), ``weights_`` (id -> int), ``score_`` (ensemble dev score, from the running sums),
    ``best_single_`` and ``best_single_score_``, ``n_rows_``.
    """

    def __init__(self, task: str, mode: str = "greedy", max_size: int | None = None, steps: int = 50):
        get_task(task)
        _check_options(mode, max_size, steps)
        self.task = task
        self.mode = mode
        self.max_size = None if max_size is None else int(max_size)
        self.steps = int(steps)

    def fit(self, preds: Mapping[str, np.ndarray], labels) -> "EnsembleSelector":
        """``preds``: candidate id -> predictions ``(n, k)`` whose rows are aligned to ``labels``."""
        return self._fit_pool(_Pool.from_aligned(self.task, preds, labels))

    def _fit_pool(self, pool: _Pool) -> "EnsembleSelector":
        order = pool.ranking()
        if self.mode == "greedy":
            members, weights, traj, sc = _greedy(pool, order, self.max_size)
        else:
            members, weights, traj, sc = _caruana(pool, order, self.max_size, self.steps)
        self.candidates_ = list(pool.ids)
        self.order_ = _ranked(pool, order)
        self.trajectory_ = traj
        self.members_ = members
        self.weights_ = weights
        self.score_ = float(sc)
        self.best_single_ = pool.ids[order[0]]
        self.best_single_score_ = float(pool.own_scores()[order[0]])
        self.n_rows_ = pool.n
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise EnsembleError("the selector is not fitted yet: call fit() first")

    def predict(self, preds: Mapping[str, np.ndarray]) -> np.ndarray:
        """Ensemble predictions ``(n, k)`` from the members' aligned predictions."""
        self._check_fitted()
        return ensemble_predictions(preds, self.weights_)

    def score(self, preds: Mapping[str, np.ndarray], labels) -> float:
        self._check_fitted()
        return score_on(self.task, preds, labels, self.weights_)


# --------------------------------------------------------------------------------------------
# public functions


def ensemble_predictions(preds_by_id: Mapping[str, np.ndarray], weights: Mapping[str, int]) -> np.ndarray:
    """Weighted average of aligned predictions, float64: ``sum_i w_i p_i / sum_i w_i``.

    Members are summed in ``weights`` order (for greedy ensembles, the order they were added),
    starting from zeros; weight 1 adds the array itself, so the result matches the selection's
    running sums bit for bit. Weights must be non-negative integers with a positive total.
    """
    if not weights:
        raise EnsembleError("the ensemble has no members")
    missing = [cid for cid in weights if cid not in preds_by_id]
    if missing:
        raise EnsembleError(f"no predictions for ensemble member(s) {_examples(missing)}")
    acc = None
    total = 0
    for cid, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 0:
            raise EnsembleError(f"weight of {cid!r} must be a non-negative integer, got {w!r}")
        if w == 0:
            continue
        p = np.asarray(preds_by_id[cid], dtype=np.float64)
        if acc is None:
            acc = np.zeros(p.shape, dtype=np.float64)
        elif p.shape != acc.shape:
            raise EnsembleError(f"predictions of {cid!r} have shape {p.shape}, other members {acc.shape}")
        if w == 1:
            acc += p
        else:
            acc += w * p
        total += int(w)
    if total == 0:
        raise EnsembleError("ensemble weights sum to zero")
    return acc / total


def score_on(task: str, preds_test: Mapping[str, np.ndarray], labels_test, weights: Mapping[str, int]) -> float:
    """The task metric of the weighted ensemble on labelled data (e.g. a labelled test split).

    ``preds_test``: member id -> predictions ``(n, k)`` aligned to ``labels_test``.
    """
    get_task(task)
    y = _check_labels(task, labels_test)
    missing = [cid for cid in weights if cid not in preds_test]
    if missing:
        raise EnsembleError(f"{task}: no predictions for ensemble member(s) {_examples(missing)}")
    preds = {cid: _as_2d(task, cid, preds_test[cid], len(y)) for cid in weights}
    for cid, p in preds.items():
        if not np.isfinite(p).all():
            raise EnsembleError(f"{task}: member {cid!r} has non-finite predictions")
    return metrics.score(task, ensemble_predictions(preds, weights), y)


def crossfit_split(ids: Sequence[str], seed: int, repeat: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of the rows (row indices into ``ids``, each ascending).

    A function of ``(seed, repeat)`` and the *sorted* ids only: the same ids in another row order
    give the same halves (as id sets). Half a has ``n // 2`` rows, half b the rest.
    """
    seed = _check_seed(seed)
    ids = list(ids)
    n = len(ids)
    by_id = sorted(range(n), key=ids.__getitem__)          # row of the i-th smallest id
    perm = np.random.default_rng([seed, int(repeat)]).permutation(n)
    rows = np.asarray(by_id, dtype=np.int64)
    h = n // 2
    return np.sort(rows[perm[:h]]), np.sort(rows[perm[h:]])


def _bootstrap_ci(gains: np.ndarray, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng([seed, 0xB007])
    idx = rng.integers(0, len(gains), size=(BOOTSTRAP_RESAMPLES, len(gains)))
    means = gains[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def _cross_fit_pool(pool: _Pool, ids: Sequence[str], mode: str, max_size, steps: int, repeats: int,
                    seed: int, full: EnsembleSelector | None = None) -> CrossFit:
    if full is None:
        full = EnsembleSelector(pool.task, mode, max_size, steps)._fit_pool(pool)
    y = pool.y
    full_ens = metrics.score(pool.task, pool.ensemble(full.weights_), y)
    full_single = metrics.score(pool.task, pool.T[pool.ids.index(full.best_single_)].T, y)
    res = CrossFit(pool.task, mode, int(repeats), int(seed), float(full_ens - full_single), None, None, None, None)
    min_half = 2 if pool.pearson else 1
    if repeats == 0:
        res.notes.append("cross-fit skipped (repeats=0): no held-out estimate")
        return res
    if pool.n // 2 < min_half:
        res.notes.append(f"cross-fit skipped: {pool.n} dev rows are too few to split in two halves")
        return res
    pos = {cid: i for i, cid in enumerate(pool.ids)}
    for r in range(repeats):
        a, b = crossfit_split(ids, seed, r)
        for name, sel_rows, out_rows in (("a->b", a, b), ("b->a", b, a)):
            sub = pool.take_rows(sel_rows)
            est = EnsembleSelector(pool.task, mode, max_size, steps)._fit_pool(sub)
            y_out = y[out_rows]
            ens = metrics.score(pool.task, pool.ensemble(est.weights_, out_rows), y_out)
            single = metrics.score(pool.task, pool.T[pos[est.best_single_]][:, out_rows].T, y_out)
            sel_ens = metrics.score(pool.task, sub.ensemble(est.weights_), sub.y)
            res.folds.append(Fold(
                r, name, len(sel_rows), len(out_rows), list(est.members_), dict(est.weights_),
                est.best_single_, float(sel_ens - est.best_single_score_),
                float(ens), float(single), float(ens - single),
            ))
    gains = np.array([f.heldout_gain for f in res.folds])
    res.heldout_gain_mean = float(gains.mean())
    res.heldout_gain_ci = _bootstrap_ci(gains, seed)
    res.heldout_ensemble_mean = float(np.mean([f.heldout_ensemble_score for f in res.folds]))
    res.heldout_single_mean = float(np.mean([f.heldout_single_score for f in res.folds]))
    res.notes.append(
        f"cross-fit: {repeats} seeded half splits x 2 directions; held-out gain = held-out ensemble score "
        f"minus held-out score of the best single candidate chosen on the selection half; 95% interval "
        f"from {BOOTSTRAP_RESAMPLES} bootstrap resamples of the {len(gains)} gains"
    )
    return res


def cross_fit(task: str, preds: Mapping[str, np.ndarray], labels, ids: Sequence[str], mode: str = "greedy",
              max_size: int | None = None, steps: int = 50, repeats: int = 20, seed: int = 0) -> CrossFit:
    """Honest estimate of the ensemble's gain by cross-fitting on dev.

    ``preds``: candidate id -> predictions ``(n, k)`` aligned to ``labels`` and ``ids`` (the row ids,
    which seed the splits independently of row order). See :func:`crossfit_split`.
    """
    get_task(task)
    _check_options(mode, max_size, steps, repeats)
    seed = _check_seed(seed)
    pool = _Pool.from_aligned(task, preds, labels)
    ids = [str(i) for i in ids]
    if len(ids) != pool.n:
        raise EnsembleError(f"{task}: {len(ids)} row ids for {pool.n} labelled rows")
    if len(set(ids)) != len(ids):
        raise EnsembleError(f"{task}: duplicate row ids")
    return _cross_fit_pool(pool, [ids[i] for i in pool.rows], mode, max_size, steps, repeats, seed)


def _align(inp: TaskInput):
    """Validate a TaskInput and join every candidate to the dev rows by id.

    Returns (pool, row ids, rejected, notes).
    """
    task = inp.task
    get_task(task)
    k = TASKS[task].n_outputs
    dev_ids = [str(i) for i in inp.dev_ids]
    n = len(dev_ids)
    if n == 0:
        raise EnsembleError(f"{task}: the dev set has no rows")
    pos = {cid: i for i, cid in enumerate(dev_ids)}
    if len(pos) != n:
        seen, dup = set(), set()
        for i in dev_ids:
            (dup if i in seen else seen).add(i)
        raise EnsembleError(f"{task}: the dev set has {n - len(pos)} duplicated ids (e.g. {_examples(dup)})")
    labels = np.asarray(inp.dev_labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or len(labels) != n:
        raise EnsembleError(f"{task}: {labels.shape[0] if labels.ndim else 0} dev labels for {n} dev ids")
    if not inp.candidates:
        raise EnsembleError(f"no candidate has dev predictions for task {task}")
    notes: list[str] = []
    try:
        lab = labels.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise EnsembleError(f"{task}: dev labels must be numbers ({exc})") from None
    has_label = np.isfinite(lab)
    if not has_label.all():
        miss = [dev_ids[i] for i in np.flatnonzero(~has_label)]
        notes.append(f"{len(miss)} dev rows without a label are left out of selection (e.g. {_examples(miss)})")
        if not has_label.any():
            raise EnsembleError(f"{task}: no dev row has a label")

    problems: list[str] = []
    rejected: list[tuple[str, str]] = []
    good: list[tuple[str, np.ndarray]] = []
    dev_set = None
    for cid in sorted(inp.candidates):
        entry = inp.candidates[cid]
        try:
            cand_ids, arr = entry
        except (TypeError, ValueError):
            raise EnsembleError(f"{task}: candidate {cid!r}: expected (row ids, predictions)") from None
        cand_ids = [str(i) for i in cand_ids]
        a = _as_2d(task, cid, arr, len(cand_ids))
        if cand_ids == dev_ids:
            inv = None
        else:
            if dev_set is None:
                dev_set = set(dev_ids)
            cset = set(cand_ids)
            what = []
            if len(cset) != len(cand_ids):
                seen, dup = set(), set()
                for i in cand_ids:
                    (dup if i in seen else seen).add(i)
                what.append(f"{len(cand_ids) - len(cset)} duplicated ids (e.g. {_examples(dup)})")
            missing = dev_set - cset
            extra = cset - dev_set
            if missing:
                what.append(f"{len(missing)} dev ids missing (e.g. {_examples(missing)})")
            if extra:
                what.append(f"{len(extra)} ids not in dev (e.g. {_examples(extra)})")
            if what:
                problems.append(f"candidate {cid!r} ({len(cand_ids)} rows for {n} dev rows): " + "; ".join(what))
                continue
            inv = np.empty(n, dtype=np.int64)
            inv[[pos[i] for i in cand_ids]] = np.arange(n)
        fin = np.isfinite(a).all(axis=1)
        if not fin.all():
            bad_rows = np.flatnonzero(~fin)
            bad_ids = [cand_ids[i] for i in bad_rows]
            rejected.append((cid, f"non-finite predictions in {len(bad_rows)} of {n} dev rows (e.g. {_examples(bad_ids)})"))
            continue
        good.append((cid, a if inv is None else a[inv]))
    if problems:
        raise EnsembleError(
            f"{task}: {len(problems)} candidate(s) do not cover exactly the {n} dev ids:\n  " + "\n  ".join(problems)
        )
    if not good:
        why = "; ".join(f"{c}: {r}" for c, r in rejected)
        raise EnsembleError(f"no usable candidate for task {task}: all {len(rejected)} rejected ({why})")

    keep = np.flatnonzero(has_label)
    if TASKS[task].kind == "classes":       # rows in label order: the fast scorer goes by label segment
        keep = keep[np.argsort(lab[keep], kind="stable")]
    all_rows = np.array_equal(keep, np.arange(n))
    y = _check_labels(task, lab if all_rows else lab[keep])
    T = np.empty((len(good), k, len(keep)), dtype=np.float64)
    for i, (cid, a) in enumerate(good):
        T[i] = (a if all_rows else a[keep]).T
        if TASKS[task].kind in ("classes", "binary"):
            if a.min() < -1e-6 or a.max() > 1 + 1e-6:
                notes.append(f"candidate {cid!r}: predictions outside [0, 1]; expected probabilities, not logits")
            elif k > 1 and np.abs(a.sum(axis=1) - 1.0).max() > 1e-3:
                notes.append(f"candidate {cid!r}: class probabilities do not sum to 1")
    row_ids = dev_ids if all_rows else [dev_ids[i] for i in keep]
    return _Pool(task, [c for c, _ in good], T, y), row_ids, rejected, notes


def select(inp: TaskInput, mode: str = "greedy", max_size: int | None = None, steps: int = 50,
           repeats: int = 20, seed: int = 0) -> TaskSelection:
    """Select the task's ensemble on dev and estimate honestly what it gains (see module doc).

    ``mode``: "greedy" or "caruana"; ``max_size``: greedy, members; caruana, distinct members
    (None: no bound); ``steps``: caruana steps; ``repeats``: cross-fit repeats (0: skip);
    ``seed``: cross-fit splits and bootstrap.

    Candidate rows are joined to ``dev_ids`` by id. Raises EnsembleError when there is no
    candidate, when a candidate's ids differ from the dev ids (all such candidates in one
    message: counts and example ids of missing, extra and duplicated ids), or on malformed input;
    a candidate with non-finite predictions is left out and listed in ``rejected``. Dev rows
    without a label are left out (noted).

    ``ensemble_dev_score``, ``best_single`` and ``in_sample_gain`` are recomputed with
    :func:`ensemble.metrics.score` from :func:`ensemble_predictions`; the trajectory's scores come
    from the running sums (equal up to float rounding). ``heldout_gain_mean`` and
    ``heldout_gain_ci`` come from :func:`cross_fit` (``heldout`` holds every fold).

    Deterministic: the same inputs give the same output, whatever the order of the candidates
    dict or of the candidates' rows; reordering the dev rows changes at most float rounding.
    """
    get_task(inp.task)
    _check_options(mode, max_size, steps, repeats)
    seed = _check_seed(seed)
    pool, row_ids, rejected, notes = _align(inp)
    est = EnsembleSelector(inp.task, mode, max_size, steps)._fit_pool(pool)
    cf = _cross_fit_pool(pool, row_ids, mode, max_size, steps, repeats, seed, full=est)
    ens_score = metrics.score(pool.task, pool.ensemble(est.weights_), pool.y)
    single_score = metrics.score(pool.task, pool.T[pool.ids.index(est.best_single_)].T, pool.y)
    if mode == "caruana":
        kept = sum(s.accepted for s in est.trajectory_)
        notes.append(
            f"caruana: {steps} steps with replacement, kept the first {kept} (shortest prefix reaching the "
            f"best dev score); max_size bounds distinct members"
        )
    params_total = None
    if inp.params:
        unknown = [c for c in est.members_ if c not in inp.params]
        if unknown:
            notes.append(f"parameter count unknown for {_examples(unknown)}")
        else:
            params_total = int(sum(int(inp.params[c]) for c in est.members_))
    notes.extend(cf.notes)
    return TaskSelection(
        task=inp.task, mode=mode, metric=TASKS[inp.task].metric, n_rows=pool.n, n_candidates=pool.m,
        max_size=est.max_size, steps=steps if mode == "caruana" else None,
        members=list(est.members_), weights=dict(est.weights_), trajectory=est.trajectory_, order=est.order_,
        best_single=(est.best_single_, float(single_score)), ensemble_dev_score=float(ens_score),
        in_sample_gain=float(ens_score - single_score), heldout_gain_mean=cf.heldout_gain_mean,
        heldout_gain_ci=cf.heldout_gain_ci, heldout=cf if repeats else None, rejected=rejected,
        params_total=params_total, notes=notes,
    )


# --------------------------------------------------------------------------------------------
# plain re-averaging baseline and the benchmark


def _plain_select(task: str, preds: Mapping[str, np.ndarray], y: np.ndarray, mode: str,
                  max_size: int | None, steps: int, deadline: float | None = None):
    """The same algorithms, re-averaging every trial ensemble from scratch and scoring with metrics.score."""
    ids = sorted(preds)
    own = {c: metrics.score(task, preds[c], y) for c in ids}
    loss = {c: metrics.secondary_loss(task, preds[c], y) for c in ids}
    order = sorted(ids, key=lambda c: (-score_key(task, own[c]), loss[c], c))
    if mode == "greedy":
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
        return list(weights), weights
    counts: dict[str, int] = {}
    history: list[tuple[float, dict]] = []
    for t in range(steps):
        elig = sorted(counts) if max_size is not None and len(counts) >= max_size else ids
        if t == 0:
            best = order[0]
        else:
            trials = []
            for c in elig:
                trial = dict(counts)
                trial[c] = trial.get(c, 0) + 1
                e = ensemble_predictions(preds, trial)
                trials.append((score_key(task, metrics.score(task, e, y)), c, e))
            top = max(k for k, _, _ in trials)
            tied = [(metrics.secondary_loss(task, e, y), c) for k, c, e in trials if k == top]
            best = min(tied)[1]
        counts[best] = counts.get(best, 0) + 1
        history.append((score_key(task, metrics.score(task, ensemble_predictions(preds, counts), y)), dict(counts)))
        if deadline is not None and time.perf_counter() > deadline:
            raise TimeoutError
    keys = [k for k, _ in history]
    weights = history[keys.index(max(keys))][1]
    return list(weights), weights


def _synthetic(task: str, m: int, n: int, seed: int):
    """Random labels and m candidates of varying quality (shared + own noise), layout (m, k, n)."""
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
    generated in label order, the layout :func:`select` builds (its copy into that order is not
    timed here, as the data is generated in place).
    """
    if task is not None:
        get_task(task)
    if mode not in MODES + ("both",):
        raise EnsembleError(f"unknown mode {mode!r}; expected greedy, caruana or both")
    if candidates < 2 or rows < 4:
        raise EnsembleError("bench_select needs at least 2 candidates and 4 rows")
    modes = MODES if mode == "both" else (mode,)
    for md in modes:
        _check_options(md, None, steps)
    tasks = list(TASKS) if task is None else [task]
    out: dict[str, Any] = {
        "candidates": int(candidates), "rows": int(rows), "steps": int(steps), "seed": int(seed),
        "cpu_count": os.cpu_count(), "load_avg_1min": _load(), "timer": "time.perf_counter (wall)",
        "results": {},
    }
    fast_total = {md: 0.0 for md in modes}
    for tk in tasks:
        ids, T, y = _synthetic(tk, candidates, rows, seed)
        plain_preds = {c: np.ascontiguousarray(T[i].T) for i, c in enumerate(ids)}
        for md in modes:
            t0, c0 = time.perf_counter(), time.process_time()
            pool = _Pool(tk, ids, T, y)
            est = EnsembleSelector(tk, md, None, steps)._fit_pool(pool)
            fast_s, fast_cpu = time.perf_counter() - t0, time.process_time() - c0
            fast_total[md] += fast_s
            entry: dict[str, Any] = {"fast_s": fast_s, "fast_cpu_s": fast_cpu, "ensemble_size": len(est.members_),
                                     "total_weight": int(sum(est.weights_.values())),
                                     "in_sample_score": est.score_, "best_single_score": est.best_single_score_}
            # estimate the plain run's cost from one timed trial of the fast result's size
            est_s = _plain_estimate(tk, plain_preds, y, md, est, steps)
            entry["plain_estimated_s"] = est_s
            if est_s <= plain_budget_s:
                t0 = time.perf_counter()
                members, weights = _plain_select(tk, plain_preds, y, md, None, steps)
                plain_s = time.perf_counter() - t0
                entry.update(plain_s=plain_s, speedup=plain_s / fast_s,
                             identical=(members == est.members_ and weights == est.weights_),
                             plain_on_prefix=None)
            else:
                p = max(2, int(candidates * plain_budget_s / est_s))
                sub_ids = ids[:p]
                t0 = time.perf_counter()
                est_p = EnsembleSelector(tk, md, None, steps)._fit_pool(_Pool(tk, sub_ids, T[:p], y))
                fast_p = time.perf_counter() - t0
                t0 = time.perf_counter()
                members, weights = _plain_select(tk, {c: plain_preds[c] for c in sub_ids}, y, md, None, steps)
                plain_p = time.perf_counter() - t0
                entry.update(plain_s=None, speedup=None,
                             identical=(members == est_p.members_ and weights == est_p.weights_),
                             plain_on_prefix={
                                 "candidates": p, "fast_s": fast_p, "plain_s": plain_p, "speedup": plain_p / fast_p,
                                 "why": f"plain run estimated at {est_s:.0f} s > {plain_budget_s:.0f} s on all "
                                        f"{candidates} candidates; both timed on the first {p} (ids ascending), "
                                        f"'identical' compares those",
                             })
            out["results"][f"{tk}/{md}"] = entry
        del T, plain_preds
    for md in modes:
        out[f"fast_{md}_total_s"] = fast_total[md]
    if "greedy" in modes and task is None:
        out["target"] = "fast greedy selection, all three tasks, under 1 s on a 2-core CPU"
        out["target_met"] = fast_total["greedy"] < 1.0
    out["load_avg_1min_end"] = _load()
    return out


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _plain_estimate(task: str, preds: Mapping[str, np.ndarray], y: np.ndarray, mode: str,
                    est: EnsembleSelector, steps: int) -> float:
    """Seconds the plain run should need: its trial sizes (from the fast run's trajectory) times
    the measured cost of re-averaging one member and of one metric call."""
    ids = list(preds)
    m = len(ids)
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
    per_score = (time.perf_counter() - t0) / reps + one
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
