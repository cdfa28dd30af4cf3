"""The selection modes by name: what each selects with, which settings it reports, and its note.

A new mode is one new file with a function ``(pool, order, budget) -> Picked`` plus one entry in
:data:`MODES`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from ..errors import EnsembleError
from . import bagged, caruana, greedy
from .checks import Budget
from .names import AUTO, DEFAULT_MODE, FIXED_DEFAULT, MODE_NAMES
from .pool import Pool
from .results import Picked, Step

__all__ = ["AUTO", "DEFAULT_MODE", "FIXED_DEFAULT", "MODES", "Mode", "get_mode"]


@dataclass(frozen=True)
class Mode:
    """``pick``: the selection over pool indices ranked best-first; ``settings``: the
    :class:`Budget` fields the mode uses and reports (besides ``max_size``); ``note``: an
    optional note for the selection's notes, from the budget and the trajectory."""

    pick: Callable[[Pool, list[int], Budget], Picked]
    settings: tuple[str, ...] = ()
    note: Callable[[Budget, list[Step]], str] | None = None

    @property
    def takes_steps(self) -> bool:
        """Whether ``steps`` bounds the mode (reported as the selection's ``steps``)."""
        return "steps" in self.settings

    def settings_of(self, budget: Budget) -> dict:
        """The mode's settings as reported: name -> value."""
        return {name: getattr(budget, name) for name in self.settings}


MODES: dict[str, Mode] = {
    "greedy": Mode(greedy.greedy),
    "greedy-strict": Mode(partial(greedy.greedy, strict=True)),
    "caruana": Mode(caruana.caruana, ("steps",), caruana.note),
    "bagged": Mode(bagged.bagged, ("steps", "bags", "fraction", "seed"), bagged.note),
}
assert tuple(MODES) == MODE_NAMES, "a mode's name goes into names.MODE_NAMES too"


def get_mode(mode: str) -> Mode:
    if not isinstance(mode, str) or mode not in MODES:
        raise EnsembleError(f"unknown selection mode {mode!r}; expected one of {', '.join(MODES)}"
                            + (" (auto chooses among them per task: select, not one selector)" if mode == AUTO else ""))
    return MODES[mode]
