"""The fields of a candidate's manifest (``candidate.json``), checked on every read, and its seal.

A manifest is a document a user can edit. Before any of it is used, :func:`shape_problem` checks
the fields that paths, hashes and tables are built from: the file list (relative paths inside
the folder, each with a sha256 and a size), the prediction entries (each ``file`` is the one
canonical ``predictions/<task>-<split>.csv`` of a known task and split, listed among the files),
the metrics (finite numbers or null), the tasks and the name. A manifest that fails is a damaged
candidate (left out of reads, named by ``verify``), never a traceback.

The seal (``"seal"``: the sha256 of the manifest's canonical JSON without it) is written by the
one manifest writer (format ``ensemble-candidate/2``) and checked by ``verify``: an edited metric,
name or record shows there, although the manifest is not in its own file list. A manifest of the
format before seals (``/1``) has none to check; its next rewrite seals it.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from ..errors import shown
from ..tasks import TASKS

SEAL = "seal"
UNSEALED_FORMAT = "ensemble-candidate/1"   # manifests written before seals: no seal expected
PREDICTION_SPLITS = ("dev", "test")


def seal_of(manifest: dict[str, Any]) -> str:
    """The sha256 of ``manifest``'s canonical JSON, its seal left out."""
    body = {k: v for k, v in manifest.items() if k != SEAL}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def seal_problem(manifest: dict[str, Any]) -> str | None:
    """Why the manifest's seal does not vouch for it (missing, or not its content's), else None."""
    seal = manifest.get(SEAL)
    if seal is None and manifest.get("format") == UNSEALED_FORMAT:
        return None   # written before seals: sealed at its next rewrite
    if seal is None:
        return "manifest has no seal (removed, or the manifest was written by hand); its fields are unchecked"
    if seal != seal_of(manifest):
        return "manifest edited after it was written (its seal does not match its content: a metric, name or record changed)"
    return None


def _key(k: Any) -> str:
    """A field name as a message shows it: plain names as they are, anything else quoted and cut."""
    return k if isinstance(k, str) and k.isidentifier() and len(k) <= 40 else shown(k)


def _plain_rel(rel: Any) -> bool:
    return (isinstance(rel, str) and rel != "" and not rel.startswith("/") and "\\" not in rel
            and ".." not in rel.split("/") and "" not in rel.split("/"))


def _files_problem(files: Any) -> str | None:
    if not isinstance(files, dict):
        return f"field files is {shown(files)}; expected an object of path -> sha256 and size"
    for rel, info in files.items():
        if not _plain_rel(rel):
            return f"field files: path {shown(rel)} is not a plain relative path inside the folder"
        if not (isinstance(info, dict) and isinstance(info.get("sha256"), str)
                and type(info.get("size")) is int and info["size"] >= 0):
            return f"field files.{rel} is {shown(info)}; expected {{\"sha256\": ..., \"size\": bytes}}"
    return None


def _predictions_problem(preds: Any, files: dict[str, Any]) -> str | None:
    if not isinstance(preds, dict):
        return f"field predictions is {shown(preds)}; expected an object of task -> split -> entry"
    for task, splits in preds.items():
        if task not in TASKS or not isinstance(splits, dict):
            return f"field predictions.{_key(task)} is {shown(splits)}; expected a known task's splits"
        for split, entry in splits.items():
            where = f"field predictions.{task}.{_key(split)}"
            if split not in PREDICTION_SPLITS or not isinstance(entry, dict):
                return f"{where} is {shown(entry)}; expected a dev or test entry object"
            want = f"predictions/{task}-{split}.csv"
            if entry.get("file") != want:
                return f"{where}.file is {shown(entry.get('file'))}; expected {want!r}"
            if want not in files:
                return f"{where}.file {want!r} is not among the manifest's files"
            if "rows" in entry and (type(entry["rows"]) is not int or entry["rows"] < 0):
                return f"{where}.rows is {shown(entry['rows'])}; expected a row count"
            data_file = entry.get("data_file")
            if data_file is not None and not (isinstance(data_file, str) and data_file == Path(data_file).name
                                              and data_file not in ("", ".", "..")):
                return f"{where}.data_file is {shown(data_file)}; expected a course file's plain name"
            if entry.get("data_sha256") is not None and not isinstance(entry["data_sha256"], str):
                return f"{where}.data_sha256 is {shown(entry['data_sha256'])}; expected a sha256 string"
    return None


def _finite(v: Any) -> bool:
    """No NaN or infinity anywhere in ``v`` (JSON has none: ``list --json`` must stay JSON)."""
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, dict):
        return all(_finite(x) for x in v.values())
    if isinstance(v, list):
        return all(_finite(x) for x in v)
    return True


def _metrics_problem(metrics: Any) -> str | None:
    if not isinstance(metrics, dict):
        return f"field metrics is {shown(metrics)}; expected an object of task -> metrics"
    for task, values in metrics.items():
        if not isinstance(values, dict):
            return f"field metrics.{_key(task)} is {shown(values)}; expected an object"
        for key, v in values.items():
            number = isinstance(v, (int, float)) and not isinstance(v, bool)
            if not _finite(v) or (key == "dev" and not (v is None or number)):
                return f"field metrics.{_key(task)}.{_key(key)} is {shown(v)}; expected a finite number or null"
    return None


def shape_problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with the fields of a manifest that reads, paths and tables rely on, else None.
    Absent fields are allowed (a folder made by hand holds few); present ones must be whole."""
    files = manifest.get("files", {})
    for problem in (_files_problem(files),
                    _predictions_problem(manifest.get("predictions", {}), files if isinstance(files, dict) else {}),
                    _metrics_problem(manifest.get("metrics", {}))):
        if problem:
            return problem
    tasks = manifest.get("tasks", [])
    if not isinstance(tasks, list) or not all(t in TASKS for t in tasks if isinstance(t, str)) or not all(
            isinstance(t, str) for t in tasks):
        return f"field tasks is {shown(tasks)}; expected a list of task names among {', '.join(TASKS)}"
    for key in ("name", "kind", "architecture", "created"):
        if manifest.get(key) is not None and not isinstance(manifest[key], str):
            return f"field {key} is {shown(manifest[key])}; expected a string"
    return None
