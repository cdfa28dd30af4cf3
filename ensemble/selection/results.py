"""What selection reports: the ranking, the trajectory, cross-fit folds and the task's selection,
each a dataclass with a JSON-safe ``to_dict`` (non-finite floats become None)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Mapping, NamedTuple


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON data: dataclasses, mappings, sequences, arrays and numpy scalars."""
    import numpy as np   # here: importing the results (the command line does) loads no numpy

    if is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(obj, "to_dict") and not isinstance(obj, _Plain):
            return obj.to_dict()
        return {f.name: jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
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
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass
class Ranked(_Plain):
    """One candidate in the best-first order by own dev score."""

    rank: int
    candidate: str
    own_score: float
    secondary_loss: float | None   # computed only where the own score is tied (it is only a tie-break)
    tie_break: str | None          # None: no tie on own score; "secondary loss" or "content hash": what decided it


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


class Picked(NamedTuple):
    """What a selection mode returns: members in order added, their weights, the trajectory and
    the ensemble's dev score from the running sums."""

    members: list[str]
    weights: dict[str, float]      # integers for greedy and caruana, floats for bagged
    trajectory: list[Step]
    score: float


@dataclass
class Fold(_Plain):
    """One cross-fit fold: select on the other folds of the repeat, score on this one."""

    repeat: int
    fold: int
    n_select: int
    n_heldout: int
    members: list[str]
    weights: dict[str, float]
    best_single: str               # best single candidate on the selection rows
    selection_gain: float          # ensemble minus best single, both on the selection rows
    heldout_ensemble_score: float
    heldout_single_score: float
    heldout_gain: float
    system: str | None = None      # auto's nested cross-fit: the system the inner cross-fit chose for this fold


@dataclass
class CrossFit(_Plain):
    """Cross-fitted (honest) estimate of what the ensemble gains over the best single candidate:
    ``estimate`` (mean of ``fold_gains``) and its ``level`` interval ``[low, high]`` by ``method``
    (t with ``df`` degrees of freedom; see :mod:`ensemble.selection.interval`)."""

    task: str
    mode: str
    method: str
    folds: int
    repeats: int
    seed: int
    level: float
    df: int
    in_sample_gain: float                          # full-dev ensemble minus best single, on full dev
    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    fold_gains: list[float] = field(default_factory=list)
    heldout_ensemble_mean: float | None = None
    heldout_single_mean: float | None = None
    per_fold: list[Fold] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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
    settings: dict                 # the mode's settings, e.g. {"steps": 50} or bagged's bags, fraction, seed
    members: list[str]
    weights: dict[str, float]
    trajectory: list[Step]
    order: list[Ranked]
    best_single: tuple[str, float]
    ensemble_dev_score: float
    in_sample_gain: float
    heldout_gain_mean: float | None                # = heldout.estimate
    heldout_gain_ci: tuple[float, float] | None    # = (heldout.low, heldout.high), at heldout.level
    heldout: CrossFit | None
    rejected: list[tuple[str, str]]
    params_total: int | None
    notes: list[str]
    # mode auto (None for a fixed mode): every candidate system's cross-fitted estimate (system ->
    # estimate, low, high, in_sample_gain, members), the system chosen, why, and the mode whose
    # ensemble the fields above describe (the best ensemble by estimate; heldout is then the nested one)
    systems: dict[str, dict] | None = None
    chosen: str | None = None
    choice_reason: str | None = None
    ensemble_mode: str | None = None

    def to_dict(self) -> dict:
        d = {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}
        d["best_single"] = {"id": self.best_single[0], "score": jsonable(self.best_single[1])}
        d["rejected"] = [{"id": cid, "reason": why} for cid, why in self.rejected]
        return d
