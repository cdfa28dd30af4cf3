"""The selection modes by name: what each selects with, and what its report says.

A new mode is one new file with a function ``(pool, order, budget) -> Picked`` plus one entry in
:data:`MODES`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import EnsembleError
from . import caruana, greedy
from .checks import Budget
from .pool import Pool
from .results import Picked, Step


@dataclass(frozen=True)
class Mode:
    """``pick``: the selection over pool indices ranked best-first; ``takes_steps``: whether
    ``steps`` bounds it (reported as the selection's ``steps``); ``note``: an optional note for
    the selection's notes, from the budget and the trajectory."""

    pick: Callable[[Pool, list[int], Budget], Picked]
    takes_steps: bool = False
    note: Callable[[Budget, list[Step]], str] | None = None


MODES: dict[str, Mode] = {
    "greedy": Mode(greedy.greedy),
    "caruana": Mode(caruana.caruana, takes_steps=True, note=caruana.note),
}


def get_mode(mode: str) -> Mode:
    if not isinstance(mode, str) or mode not in MODES:
        raise EnsembleError(f"unknown selection mode {mode!r}; expected one of {', '.join(MODES)}")
    return MODES[mode]
