"""The saved ensemble document (``ensembles/<name>.json``): written here from ``select``'s result (per
task the system chosen and why, its members in selection order, weights, settings, the held-out
interval, the hashes ``predict`` checks) and read back here, field by field.

``select`` writes these files, but a user may edit one by hand, and a damaged one must never
reach ``predict`` as a traceback or as silently wrong weights. :func:`read_ensemble_file` is the
one reader: any bytes give either the checked document or one :class:`EnsembleError` naming the
file and the field, what it holds and what was expected. No torch, no numpy.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .candidate import Candidate, is_plain_name, now_iso
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


def _fail(path: Path, field: str, value: Any, expected: str) -> EnsembleError:
    return EnsembleError(f"{path}: field {field} is {shown(value)}; expected {expected} "
                         "(hand-edited? `ensemble select` saves a new one)")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_weights(path: Path, where: str, weights: Any) -> None:
    if not isinstance(weights, dict) or not weights:
        raise _fail(path, f"{where}.weights", weights, "an object of member id -> weight with at least one member")
    for cid, w in weights.items():
        if not is_plain_name(cid):
            raise _fail(path, f"{where}.weights", cid, "member ids that are plain candidate ids")
        if not _number(w) or w <= 0:
            raise _fail(path, f"{where}.weights.{cid}", w, "a finite number > 0")


def _check_hashes(path: Path, where: str, hashes: Any) -> None:
    if not isinstance(hashes, dict):
        raise _fail(path, f"{where}.prediction_sha256", hashes, "an object of member id -> split -> sha256")
    for cid, per_split in hashes.items():
        if not is_plain_name(cid) or not isinstance(per_split, dict) or not all(
                s in SPLITS and isinstance(h, str) for s, h in per_split.items()):
            raise _fail(path, f"{where}.prediction_sha256.{cid}", per_split, "an object of split (dev, test) -> sha256")


def _check_task(path: Path, task: str, entry: Any) -> None:
    where = f"tasks.{task}"
    if not isinstance(entry, dict):
        raise _fail(path, where, entry, "an object with members and weights")
    _check_weights(path, where, entry.get("weights"))
    if entry.get("selected") is not None:   # the selection's own weights before --system auto (analyze reads it)
        _check_weights(path, f"{where}.selected", entry["selected"].get("weights")
                       if isinstance(entry["selected"], dict) else entry["selected"])
    members = entry.get("members", list(entry["weights"]))
    if not isinstance(members, list) or not all(isinstance(m, str) and is_plain_name(m) for m in members):
        raise _fail(path, f"{where}.members", members, "a list of plain candidate ids")
    if entry.get("dev_score") is not None and not _number(entry["dev_score"]):
        raise _fail(path, f"{where}.dev_score", entry["dev_score"], "a finite number or null")
    if "prediction_sha256" in entry:
        _check_hashes(path, where, entry["prediction_sha256"])


def check_ensemble_doc(path: Path, doc: Any) -> dict[str, Any]:
    """``doc`` (read from ``path``) if it is a whole saved ensemble; else the error naming the field."""
    if not isinstance(doc, dict):
        raise _fail(path, "(the document)", type(doc).__name__, "a JSON object saved by `ensemble select`")
    tasks = doc.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise _fail(path, "tasks", tasks, f"an object with an entry for some of {', '.join(TASKS)}")
    for task, entry in tasks.items():
        if task not in TASKS:
            raise _fail(path, "tasks", task, f"task names among {', '.join(TASKS)}")
        _check_task(path, task, entry)
    if not isinstance(doc.get("name"), str) or not doc["name"]:
        raise _fail(path, "name", doc.get("name"), "the ensemble's name (a string)")
    for key in ("mode", "created"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise _fail(path, key, doc[key], "a string")
    summary = doc.get("summary", [])
    if not isinstance(summary, list) or not all(isinstance(r, dict) for r in summary):
        raise _fail(path, "summary", summary, "a list of objects")
    return doc


def read_ensemble_file(path: Path) -> dict[str, Any]:
    """The checked saved ensemble at ``path`` (:func:`check_ensemble_doc`)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise EnsembleError(f"{path}: cannot read ({e.strerror or e})") from e
    try:
        doc = json.loads(raw.decode("utf-8"))
    except ValueError as e:   # UnicodeDecodeError is one
        raise EnsembleError(f"{path}: not valid JSON ({e}); expected an ensemble saved by `ensemble select`") from e
    return check_ensemble_doc(path, doc)


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
    weights = dict(entry["weights"])
    bad = [cid for cid, w in weights.items()
           if isinstance(w, bool) or not isinstance(w, (int, float)) or not (0 < w < math.inf)]
    if bad:
        raise EnsembleError(f"ensemble {doc.get('name')!r}, task {task}: weight of {bad[0]} is "
                            f"{weights[bad[0]]!r}; expected a positive number (select again)")
    order = [cid for cid in entry.get("members", []) if cid in weights]
    order += sorted(cid for cid in weights if cid not in order)
    return {cid: weights[cid] for cid in order}
