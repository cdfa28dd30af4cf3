"""Whether a task's ensemble is expected to beat its best single candidate on new rows, in words.

Read from the cross-fitted held-out estimate (:mod:`ensemble.selection.crossfit`): an estimate at
or below 0 means the ensemble is not expected to beat the best single candidate, whatever its dev
score says; ``run`` then submits the best single candidate for that task. With ``--mode auto``
the choice is the selection's own (:mod:`.choice`: the best single candidate is one of the systems
it chooses among), and the words add the nested estimate of that choice.
"""
from __future__ import annotations

from typing import Any

from .results import TaskSelection


def verdict(sel: TaskSelection) -> tuple[bool | None, str]:
    """(expected to beat the best single candidate, or None when not estimated; the words)."""
    cf = sel.heldout
    if list(sel.weights) == [sel.best_single[0]]:
        return None, "the ensemble is the best single candidate itself"
    if cf is None or cf.estimate is None:
        return None, "held-out gain not estimated (too few dev rows or --repeats 0)"
    interval = f"{cf.level:.0%} interval [{cf.low:+.4f}, {cf.high:+.4f}]"
    if cf.estimate <= 0:
        return False, (f"not expected to beat the best single candidate: held-out gain {cf.estimate:+.4f}, "
                       f"{interval}")
    if cf.low > 0:
        return True, f"expected to beat the best single candidate: held-out gain {cf.estimate:+.4f}, {interval}"
    return True, (f"expected to beat the best single candidate, but not surely: held-out gain {cf.estimate:+.4f}, "
                  f"{interval} includes 0")


SYSTEMS = ("ensemble", "auto")   # what is saved per task: always the ensemble, or the better system


def auto_words(sel: TaskSelection) -> str:
    """auto's choice and the nested estimate of it, in words."""
    cf = sel.heldout
    words = f"auto chose {sel.choice_reason}"
    if cf is not None and cf.estimate is not None:
        words += (f"; held-out gain of choosing this way (nested cross-fit) {cf.estimate:+.4f}, {cf.level:.0%} "
                  f"interval [{cf.low:+.4f}, {cf.high:+.4f}]")
    return words


def _auto_choice(sel: TaskSelection, system: str) -> dict[str, Any]:
    single = system == "auto" and sel.chosen == "single"
    words = auto_words(sel)
    expected = None if sel.heldout is None or sel.heldout.estimate is None else sel.chosen != "single"
    what = ("the best single candidate is submitted" if single else
            f"the {sel.ensemble_mode} ensemble is submitted" + (" (asked for)" if system == "ensemble" else ""))
    return {"system": "best single" if single else "ensemble", "expected_to_beat_single": expected,
            "verdict": words, "reason": f"{what}: {words}"}


def choose_systems(selections: dict[str, Any], system: str) -> dict[str, dict[str, str]]:
    """Per task, the system saved ("ensemble" or "best single") and why, in words."""
    out = {}
    for task, sel in selections.items():
        if sel.chosen is not None:
            out[task] = _auto_choice(sel, system)
            continue
        expected, words = verdict(sel)
        single = system == "auto" and expected is False
        out[task] = {"system": "best single" if single else "ensemble", "expected_to_beat_single": expected,
                     "verdict": words,
                     "reason": (f"the best single candidate is submitted: the ensemble is {words}" if single
                                else "the ensemble is submitted" + (" (--system ensemble, select's default)" if system == "ensemble" else "")
                                + f": {words}")}
    return out
