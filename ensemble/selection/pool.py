"""The scorer: one task's aligned candidate predictions, and the running ensembles built on them.

Adding candidate ``c`` to an ensemble with sum ``S`` and weight ``W`` gives ``(S + c) / (W + 1)``,
which for greedy is bit for bit what :func:`ensemble_predictions` computes (Caruana's repeated
members may differ from it in the last bit). Caruana mode scores all candidates per step in one
vectorised pass: accuracy in candidate chunks over the rows some candidate could still change
(:mod:`.accuracy`, :mod:`.workset`), Pearson r from sums (:mod:`.pearson`).
"""
from __future__ import annotations

import hashlib
from functools import cached_property
from typing import Mapping

import numpy as np

from .. import metrics
from ..errors import EnsembleError
from ..tasks import TASKS, get_task
from .accuracy import correct_counts, locked_rows
from .average import ensemble_predictions
from .checks import as_2d, check_labels
from .keys import loss_key, score_keys
from .pearson import PearsonRun, PearsonSums
from .workset import counts_with, view


def content_hash(pred) -> str:
    """sha256 (hex) of predictions ``(n, k)`` as C-order float64 bytes: the tie-break key of candidates."""
    return hashlib.sha256(np.ascontiguousarray(pred, dtype=np.float64).tobytes()).hexdigest()


class State:
    """A running ensemble: float64 sum of member predictions ``S`` (k, n) and total weight ``W``.

    ``pear``: Pearson pools, the centred running sums; ``lock``: accuracy pools, the view of the
    current ``S`` (see :mod:`.workset`); ``work``: the working set of rows kept across steps.
    """

    __slots__ = ("S", "W", "pear", "lock", "work")

    def __init__(self, k: int, n: int, pearson: bool):
        self.S = np.zeros((k, n), dtype=np.float64)
        self.W = 0
        self.pear = PearsonRun(n) if pearson else None
        self.lock = None
        self.work = None


class Pool:
    """Aligned candidate predictions for one task, stored as ``T`` of shape (m, k, n), float64.

    ``ids``: the candidate ids, row i of ``T`` is ``ids[i]``; pools built by :meth:`in_content_order`
    hold them ordered by (content hash of the predictions, id), so ties decided by position follow
    the content, not the registration. ``rows``: the original row of each pool row (pools may
    reorder rows).
    """

    def __init__(self, task: str, ids: list[str], T: np.ndarray, y: np.ndarray):
        self.task = task
        self.kind = TASKS[task].kind
        self.is_pearson = TASKS[task].metric == "pearson"
        self.ids = list(ids)
        self.T = T
        self.y = y
        self.m, self.k, self.n = T.shape
        self.rows = np.arange(self.n)
        self._own: np.ndarray | None = None
        self._loss: dict[int, float] = {}

    @classmethod
    def from_aligned(cls, task: str, preds: Mapping[str, np.ndarray], labels) -> "Pool":
        """A pool from candidate id -> predictions ``(n, k)`` aligned to ``labels`` (checked)."""
        get_task(task)
        if not preds:
            raise EnsembleError(f"no candidate has dev predictions for task {task}")
        y = check_labels(task, labels)
        n = len(y)
        ids = sorted(preds)
        T = np.empty((len(ids), TASKS[task].n_outputs, n), dtype=np.float64)
        for i, cid in enumerate(ids):
            a = as_2d(task, cid, preds[cid], n)
            if not np.isfinite(a).all():
                raise EnsembleError(f"{task}: candidate {cid!r} has non-finite predictions")
            T[i] = a.T
        pool = cls.in_content_order(task, ids, T, y)
        if TASKS[task].kind == "classes":
            pool = pool.take_rows(np.argsort(y, kind="stable"))
        return pool

    @classmethod
    def in_content_order(cls, task: str, ids: list[str], T: np.ndarray, y: np.ndarray,
                         canon: np.ndarray | None = None) -> "Pool":
        """A pool whose candidates are ordered by (:func:`content_hash`, id); the hash is of each
        candidate's predictions ``(n, k)`` with rows in ``canon`` order (None: as given; ``select``
        passes the rows in id order, so the row order of the inputs does not matter)."""
        keys = [(content_hash(T[i].T if canon is None else T[i].T[canon]), cid) for i, cid in enumerate(ids)]
        order = sorted(range(len(ids)), key=keys.__getitem__)
        return cls(task, [ids[i] for i in order], T[order], y)

    def take_candidates(self, cols: np.ndarray) -> "Pool":
        """A pool of these candidates (``cols`` ascending, so the order is kept), same rows and labels."""
        sub = Pool(self.task, [self.ids[c] for c in cols], self.T[cols], self.y)
        sub.rows = self.rows
        if self._own is not None:
            sub._own = self._own[cols]
        return sub

    def take_rows(self, rows: np.ndarray) -> "Pool":
        """A pool of these rows (``rows`` index this pool); ``.rows`` maps back to the original rows."""
        sub = Pool(self.task, self.ids, np.take(self.T, rows, axis=2), self.y[rows])
        sub.rows = self.rows[rows]
        return sub

    @cached_property
    def sums(self) -> PearsonSums:
        return PearsonSums(self.T[:, 0, :], self.y)

    @cached_property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-row minimum and maximum over all candidates, each (k, n)."""
        return self.T.min(axis=0), self.T.max(axis=0)

    def locked(self, st: State, h: int = 1):
        """:func:`.accuracy.locked_rows` of the state's sum."""
        return locked_rows(self.kind, st.S, st.W, self.bounds, self.y, h)

    def empty_state(self) -> State:
        return State(self.k, self.n, self.is_pearson)

    def add(self, st: State, j: int) -> None:
        st.S += self.T[j]
        st.W += 1
        st.lock = None
        if self.is_pearson:
            self.sums.add(st.pear, j)

    def scores_with(self, st: State, idx: np.ndarray) -> np.ndarray:
        """Scores of (S + c) / (W + 1) for all c in idx (vectorised)."""
        idx = np.asarray(idx, dtype=np.int64)
        if st.W == 0:
            return self.own_scores()[idx]
        if self.is_pearson:
            return self.sums.with_all(st.pear, idx)
        return counts_with(self, st, idx, use_locks=True) / self.n

    def score_with(self, st: State, j: int) -> float:
        """Score of (S + c_j) / (W + 1) for one candidate."""
        if self.is_pearson:
            return self.sums.with_one(st.pear, j)
        R, _, S, y, base = view(self, st, working_set=False)
        if S.shape[1] == 0:
            return base / self.n
        E = (S + (self.T[j] if R is None else self.T[j][:, R])) / (st.W + 1)
        return float(correct_counts(self.kind, E[None], y)[0] + base) / self.n

    def loss_with(self, st: State, j: int) -> float:
        """Secondary loss of (S + c_j) / (W + 1)."""
        E = (st.S + self.T[j]) / (st.W + 1)
        return metrics.secondary_loss(self.task, E.T, self.y)

    def own_scores(self) -> np.ndarray:
        """Every candidate's own score (computed once)."""
        if self._own is None:
            if self.is_pearson:
                self._own = self.sums.own()
            else:
                self._own = counts_with(self, self.empty_state(), np.arange(self.m), use_locks=False) / self.n
        return self._own

    def own_loss(self, j: int) -> float:
        """Secondary loss of candidate j alone (computed on demand: only ties need it)."""
        if j not in self._loss:
            self._loss[j] = metrics.secondary_loss(self.task, self.T[j].T, self.y)
        return self._loss[j]

    def ranking(self) -> list[int]:
        """Candidates best-first: own score desc, then secondary loss asc, then position (content hash, id)."""
        keys = score_keys(self.task, self.own_scores())
        uniq, counts = np.unique(keys, return_counts=True)
        shared = set(uniq[counts > 1].tolist())
        loss = [loss_key(self.own_loss(i)) if keys[i] in shared else 0.0 for i in range(self.m)]
        return sorted(range(self.m), key=lambda i: (-keys[i], loss[i], i))

    def ensemble(self, weights: Mapping[str, float], rows: np.ndarray | None = None) -> np.ndarray:
        """Weighted average (n, k) of members given by id, in ``weights`` order (as ensemble_predictions)."""
        pos = {cid: i for i, cid in enumerate(self.ids)}
        preds = {cid: (self.T[pos[cid]] if rows is None else self.T[pos[cid]][:, rows]).T for cid in weights}
        return ensemble_predictions(preds, weights)

    def single(self, cid: str, rows: np.ndarray | None = None) -> np.ndarray:
        """One candidate's predictions (n, k), on ``rows`` (None: all)."""
        t = self.T[self.ids.index(cid)]
        return (t if rows is None else t[:, rows]).T
