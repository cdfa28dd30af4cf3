"""The saved ensemble document (``ensembles/<name>.json``): written here from ``select``'s result (per
task the system chosen and why, its members in selection order, weights, settings, the held-out
interval, the hashes ``predict`` checks) and read back here, field by field.

``select`` writes these files, but a user may edit one by hand, and a damaged one must never
reach ``predict`` as a traceback or as silently wrong weights. :func:`read_ensemble_file` is the
one reader: any bytes give either the checked document or one :class:`EnsembleError` naming the
file and the field, what it holds and what was expected. No torch, no numpy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .candidate import Candidate, now_iso
from .. import documents
from ..errors import EnsembleError, shown
from ..files import file_sha256
from ..tasks import TASKS

SPLITS = ("dev", "test")


def check_ensemble_name(name: Any) -> str:
    """``name`` if it can name a saved ensemble file (``ensembles/<name>.json``): a non-empty plain
    file name, no path separator, not hidden, no ``..``; else the error naming it."""
    if not isinstance(name, str) or not name or any(c in name for c in "/\\\0") or name.startswith(".") \
            or ".." in name:
        raise EnsembleError(f"ensemble name {shown(name)}: expected a plain file name (no '/', '..', "
                            "or leading '.'; not empty)")
    return name


def check_ensemble_doc(path: Path, doc: Any) -> dict[str, Any]:
    """``doc`` (read from ``path``) if it is a whole saved ensemble
    (:class:`ensemble.documents.SavedEnsemble`); else the error naming the file and the field.
    The checked JSON object is returned: its readers index it."""
    documents.check(path, documents.SavedEnsemble, doc)
    return doc


def read_ensemble_file(path: Path) -> dict[str, Any]:
    """The checked saved ensemble at ``path`` (:func:`check_ensemble_doc`)."""
    return check_ensemble_doc(path, documents.load_json(path, what="an ensemble saved by `ensemble select`"))


# -- writing: the document select saves, and the weights predict reads back -------------------------
def prediction_hashes(task: str, members, by_id: dict[str, Candidate]) -> dict[str, dict[str, str]]:
    """member -> split -> sha256 of its cached prediction file (checked again by ``predict``)."""
    return {cid: {s: by_id[cid].prediction_sha256(task, s) for s in by_id[cid].prediction_splits(task)}
            for cid in members}


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


def _auto_record(sel: Any) -> dict[str, Any]:
    """mode auto: the mode of the selected ensemble, every system's estimate, the choice and why."""
    if getattr(sel, "chosen", None) is None:
        return {}
    return {"mode": sel.ensemble_mode, "chosen": sel.chosen, "choice": sel.choice_reason, "systems": sel.systems}


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
                    "interval": _heldout_record(sel), **_auto_record(sel),
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
    weights = dict(entry["weights"])   # finite and > 0: checked where the document was read
    order = [cid for cid in entry.get("members", []) if cid in weights]
    order += sorted(cid for cid in weights if cid not in order)
    return {cid: weights[cid] for cid in order}
