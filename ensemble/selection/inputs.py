"""Turning a :class:`TaskInput` into a pool: check the dev rows, join every candidate to them by
id, leave out unlabelled rows and non-finite candidates, and stack what is left."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..errors import EnsembleError
from ..tasks import TASKS, get_task
from .checks import as_2d, check_labels, examples
from .pool import Pool


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


class Aligned(NamedTuple):
    """A TaskInput made ready: the pool, its row ids, the rejected candidates (id, why), notes."""

    pool: Pool
    row_ids: list[str]
    rejected: list[tuple[str, str]]
    notes: list[str]


def _duplicates(ids: list[str]) -> set[str]:
    seen, dup = set(), set()
    for i in ids:
        (dup if i in seen else seen).add(i)
    return dup


def _dev_rows(inp: TaskInput) -> tuple[list[str], np.ndarray, list[str]]:
    """The dev ids, labels as float64 (NaN: no label) and the notes on them."""
    task = inp.task
    dev_ids = [str(i) for i in inp.dev_ids]
    n = len(dev_ids)
    if n == 0:
        raise EnsembleError(f"{task}: the dev set has no rows")
    if len(set(dev_ids)) != n:
        raise EnsembleError(f"{task}: the dev set has {n - len(set(dev_ids))} duplicated ids "
                            f"(e.g. {examples(_duplicates(dev_ids))})")
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
        notes.append(f"{len(miss)} dev rows without a label are left out of selection (e.g. {examples(miss)})")
        if not has_label.any():
            raise EnsembleError(f"{task}: no dev row has a label")
    return dev_ids, lab, notes


def _id_problems(cand_ids: list[str], dev_set: set[str]) -> list[str]:
    """What differs between a candidate's row ids and the dev ids (empty: the same set, once each)."""
    cset = set(cand_ids)
    what = []
    if len(cset) != len(cand_ids):
        what.append(f"{len(cand_ids) - len(cset)} duplicated ids (e.g. {examples(_duplicates(cand_ids))})")
    missing = dev_set - cset
    extra = cset - dev_set
    if missing:
        what.append(f"{len(missing)} dev ids missing (e.g. {examples(missing)})")
    if extra:
        what.append(f"{len(extra)} ids not in dev (e.g. {examples(extra)})")
    return what


def _join(inp: TaskInput, dev_ids: list[str]):
    """Every candidate's predictions in dev row order: (good [(id, array)], rejected, id problems)."""
    task, n = inp.task, len(dev_ids)
    pos = {cid: i for i, cid in enumerate(dev_ids)}
    dev_set = set(dev_ids)
    problems: list[str] = []
    rejected: list[tuple[str, str]] = []
    good: list[tuple[str, np.ndarray]] = []
    for cid in sorted(inp.candidates):
        try:
            cand_ids, arr = inp.candidates[cid]
        except (TypeError, ValueError):
            raise EnsembleError(f"{task}: candidate {cid!r}: expected (row ids, predictions)") from None
        cand_ids = [str(i) for i in cand_ids]
        a = as_2d(task, cid, arr, len(cand_ids))
        inv = None
        if cand_ids != dev_ids:
            what = _id_problems(cand_ids, dev_set)
            if what:
                problems.append(f"candidate {cid!r} ({len(cand_ids)} rows for {n} dev rows): " + "; ".join(what))
                continue
            inv = np.empty(n, dtype=np.int64)
            inv[[pos[i] for i in cand_ids]] = np.arange(n)
        fin = np.isfinite(a).all(axis=1)
        if not fin.all():
            bad_rows = np.flatnonzero(~fin)
            bad_ids = [cand_ids[i] for i in bad_rows]
            rejected.append((cid, f"non-finite predictions in {len(bad_rows)} of {n} dev rows (e.g. {examples(bad_ids)})"))
            continue
        good.append((cid, a if inv is None else a[inv]))
    return good, rejected, problems


def _stack(task: str, good: list[tuple[str, np.ndarray]], lab: np.ndarray, notes: list[str]):
    """The labelled rows (sst: in label order) of every good candidate: (T (m, k, u), y, rows kept)."""
    k = TASKS[task].n_outputs
    n = len(lab)
    keep = np.flatnonzero(np.isfinite(lab))
    if TASKS[task].kind == "classes":       # rows in label order: the fast scorer goes by label segment
        keep = keep[np.argsort(lab[keep], kind="stable")]
    all_rows = np.array_equal(keep, np.arange(n))
    y = check_labels(task, lab if all_rows else lab[keep])
    T = np.empty((len(good), k, len(keep)), dtype=np.float64)
    for i, (cid, a) in enumerate(good):
        T[i] = (a if all_rows else a[keep]).T
        if TASKS[task].kind in ("classes", "binary"):
            if a.min() < -1e-6 or a.max() > 1 + 1e-6:
                notes.append(f"candidate {cid!r}: predictions outside [0, 1]; expected probabilities, not logits")
            elif k > 1 and np.abs(a.sum(axis=1) - 1.0).max() > 1e-3:
                notes.append(f"candidate {cid!r}: class probabilities do not sum to 1")
    return T, y, (None if all_rows else keep)


def align(inp: TaskInput) -> Aligned:
    """Validate a TaskInput and join every candidate to the dev rows by id."""
    task = inp.task
    get_task(task)
    dev_ids, lab, notes = _dev_rows(inp)
    good, rejected, problems = _join(inp, dev_ids)
    if problems:
        raise EnsembleError(
            f"{task}: {len(problems)} candidate(s) do not cover exactly the {len(dev_ids)} dev ids:\n  "
            + "\n  ".join(problems)
        )
    if not good:
        why = "; ".join(f"{c}: {r}" for c, r in rejected)
        raise EnsembleError(f"no usable candidate for task {task}: all {len(rejected)} rejected ({why})")
    T, y, keep = _stack(task, good, lab, notes)
    row_ids = dev_ids if keep is None else [dev_ids[i] for i in keep]
    pool = Pool.in_content_order(task, [c for c, _ in good], T, y, np.argsort(row_ids, kind="stable"))
    return Aligned(pool, row_ids, rejected, notes)
