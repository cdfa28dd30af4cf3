"""The saved ensemble document: what ``select`` saves per task (the system chosen and why, its
members in selection order, weights, settings, the held-out interval, the hashes ``predict``
checks) and how ``predict`` reads its members back. numpy-free; no torch."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .. import selection
from .candidate import Candidate, now_iso
from ..errors import EnsembleError
from ..files import file_sha256
from ..tasks import TASKS

SYSTEMS = ("ensemble", "auto")   # what is saved per task: always the ensemble, or the better system


def prediction_hashes(task: str, members, by_id: dict[str, Candidate]) -> dict[str, dict[str, str]]:
    """member -> split -> sha256 of its cached prediction file (checked again by ``predict``)."""
    return {cid: {s: by_id[cid].manifest["files"][e["file"]]["sha256"]
                  for s, e in by_id[cid].manifest["predictions"].get(task, {}).items()}
            for cid in members}


def choose_systems(selections: dict[str, Any], system: str) -> dict[str, dict[str, str]]:
    """Per task, the system saved ("ensemble" or "best single") and why, in words."""
    out = {}
    for task, sel in selections.items():
        expected, words = selection.verdict(sel)
        single = system == "auto" and expected is False
        out[task] = {"system": "best single" if single else "ensemble", "expected_to_beat_single": expected,
                     "verdict": words,
                     "reason": (f"the best single candidate is submitted: the ensemble is {words}" if single
                                else "the ensemble is submitted" + (" (asked for)" if system == "ensemble" else "")
                                + f": {words}")}
    return out


def saved_system(sel: Any, choice: dict[str, str]) -> tuple[list[str], dict[str, float], float]:
    """(members, weights, dev score) of the system saved for the task."""
    if choice["system"] == "best single":
        cid, score = sel.best_single
        return [cid], {cid: 1}, float(score)
    return list(sel.members), dict(sel.weights), float(sel.ensemble_dev_score)


def _heldout_record(sel: Any) -> dict[str, Any] | None:
    cf = sel.heldout
    if cf is None:
        return None
    return {"method": cf.method, "level": cf.level, "folds": cf.folds, "repeats": cf.repeats, "df": cf.df,
            "seed": cf.seed, "estimate": cf.estimate, "low": cf.low, "high": cf.high}


def ensemble_doc(name: str, mode: str, sample: bool, data_dir: Path, selections: dict[str, Any],
                 choices: dict[str, dict[str, str]], by_id: dict[str, Candidate],
                 summary: list[dict[str, Any]]) -> dict[str, Any]:
    """The saved ensemble: per task the system saved (members in selection order, weights), why,
    the mode's settings and the held-out interval; dev files' and predictions' hashes."""
    tasks = {}
    for t, sel in selections.items():
        members, weights, dev_score = saved_system(sel, choices[t])
        tasks[t] = {"members": members, "weights": weights, "dev_score": dev_score,
                    "prediction_sha256": prediction_hashes(t, members, by_id), **choices[t], "settings": sel.settings,
                    "interval": _heldout_record(sel),
                    "selected": {"members": list(sel.members), "weights": dict(sel.weights),
                                 "dev_score": sel.ensemble_dev_score}}
    return {
        "name": name, "created": now_iso(), "mode": mode, "sample": sample,
        "data": {TASKS[t].file_name("dev"): file_sha256(Path(data_dir) / TASKS[t].file_name("dev")) for t in selections},
        "tasks": tasks,
        "summary": summary,
    }


def members_in_order(doc: dict[str, Any], task: str) -> dict[str, float]:
    """The task's weights in selection order (the saved ``members`` list), which is the order
    :func:`ensemble.selection.ensemble_predictions` summed them in when ``select`` scored the ensemble.
    Ensembles saved before ``members`` existed fall back to id order."""
    entry = doc["tasks"][task]
    weights = dict(entry["weights"])
    bad = [cid for cid, w in weights.items()
           if isinstance(w, bool) or not isinstance(w, (int, float)) or not (0 < w < math.inf)]
    if bad:
        raise EnsembleError(f"ensemble {doc.get('name')!r}, task {task}: weight of {bad[0]} is "
                            f"{weights[bad[0]]!r}; expected a positive number (select again)")
    order = [cid for cid in entry.get("members", []) if cid in weights]
    order += sorted(cid for cid in weights if cid not in order)
    return {cid: weights[cid] for cid in order}
