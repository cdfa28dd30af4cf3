"""Checks of what callers hand the selector: options, seeds, labels and prediction arrays.

Every check raises :class:`ensemble.errors.EnsembleError` with a message naming the task (and the
candidate) and quoting at most a few example values.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import EnsembleError
from ..tasks import TASKS

EXAMPLES = 3                   # example ids quoted in messages


def examples(items) -> str:
    """Up to :data:`EXAMPLES` of ``items``, sorted and quoted, with ", ..." when there are more."""
    items = sorted(items)
    shown = ", ".join(repr(i) for i in items[:EXAMPLES])
    return shown + (", ..." if len(items) > EXAMPLES else "")


def _is_int(x) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, np.integer))


@dataclass(frozen=True)
class Budget:
    """How far a selection mode may go, and its settings: ``max_size`` members (None: no bound),
    ``steps`` (the modes that take steps, such as caruana), and bagged's ``bags`` random subsets of
    ``fraction`` of the library, drawn from ``seed``."""

    max_size: int | None
    steps: int
    bags: int = 20
    fraction: float = 0.5
    seed: int = 0


def check_budget(max_size, steps, repeats=0, bags=20, fraction=0.5, seed=0) -> Budget:
    """``max_size`` a positive integer or None, ``steps`` and ``bags`` positive, ``repeats``
    non-negative, ``fraction`` in (0, 1], ``seed`` a non-negative integer."""
    if max_size is not None and (not _is_int(max_size) or max_size < 1):
        raise EnsembleError(f"max_size must be a positive integer or None (no bound), got {max_size!r}")
    if not _is_int(steps) or steps < 1:
        raise EnsembleError(f"steps must be a positive integer, got {steps!r}")
    if not _is_int(repeats) or repeats < 0:
        raise EnsembleError(f"repeats must be a non-negative integer, got {repeats!r}")
    if not _is_int(bags) or bags < 1:
        raise EnsembleError(f"bags must be a positive integer, got {bags!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) or not 0 < fraction <= 1:
        raise EnsembleError(f"fraction must be a number in (0, 1], got {fraction!r}")
    return Budget(None if max_size is None else int(max_size), int(steps), int(bags), float(fraction),
                  check_seed(seed))


def check_folds(folds, level) -> tuple[int, float]:
    """Cross-fit ``folds`` an integer >= 2 and the interval's ``level`` in (0, 1)."""
    if not _is_int(folds) or folds < 2:
        raise EnsembleError(f"folds must be an integer >= 2, got {folds!r}")
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)) or not 0 < level < 1:
        raise EnsembleError(f"level must be a number in (0, 1), got {level!r}")
    return int(folds), float(level)


def check_seed(seed) -> int:
    if not _is_int(seed) or seed < 0:
        raise EnsembleError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_labels(task: str, labels, n: int | None = None) -> np.ndarray:
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
    return _check_label_values(task, y)


def _check_label_values(task: str, y: np.ndarray) -> np.ndarray:
    kind = TASKS[task].kind
    if kind == "classes":
        bad = (y != np.round(y)) | (y < 0) | (y >= TASKS[task].n_outputs)
        if bad.any():
            raise EnsembleError(
                f"{task}: labels must be classes 0..{TASKS[task].n_outputs - 1}; "
                f"got {examples({float(v) for v in y[bad]})}"
            )
        return y.astype(np.int64)
    if kind == "binary":
        bad = (y != 0.0) & (y != 1.0)
        if bad.any():
            raise EnsembleError(f"{task}: labels must be 0 or 1; got {examples({float(v) for v in y[bad]})}")
    return y


def as_2d(task: str, cid: str, arr, n: int | None = None) -> np.ndarray:
    """A candidate's predictions as float64 ``(n, k)`` (a 1-D array is one column where k = 1)."""
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
