"""The submission zip: the six validated leaderboard files, a manifest and, if asked, the code.

A zip is published under a new name (``submission-YYYYmmdd-HHMMSS-dev0.7908.zip``, then ``-2``,
``-3``, ... when taken) and never overwrites an earlier one. Its manifest names the ensemble that
made the files, from the stamp ``predict`` left beside them (:func:`ensemble_record`), and the
user's message; :func:`list_submissions` reads the manifests back, like Kaggle's history.

Pure Python; no torch, typer or rich.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import zipfile
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

from .. import documents
from ..errors import EnsembleError
from ..files import fault_point, fsync_dir, make_folder, read_zip_member, remove_quiet, stage_bytes
from .write import dir_lock
from ..tasks import TASK_NAMES
from .validate import OUTPUT_SPLITS, CheckedFile, check_folder, check_stamp, made_from_sample, report

__all__ = ["SOURCE_SKIP_DIRS", "UNSTAMPED", "checked_files", "ensemble_record", "make_submission", "pack",
           "submission_name", "source_files", "list_submissions"]

SOURCE_SKIP_DIRS = frozenset({".venv", "venv", "checkpoints", "predictions", "submissions", ".git", "__pycache__"})
UNSTAMPED = "unknown (no stamp)"
MANIFEST_NAME = "MANIFEST.json"


def _tool_version() -> str:
    try:
        return version("ensemble")
    except Exception:
        return "unknown"


def submission_name(now: datetime, mean_dev: float | None) -> str:
    """``submission-YYYYmmdd-HHMMSS-dev0.7908.zip`` (no dev part when ``mean_dev`` is None)."""
    dev = "" if mean_dev is None else f"-dev{mean_dev:.4f}"
    return f"submission-{now:%Y%m%d-%H%M%S}{dev}.zip"


def source_files(root: Path) -> list[Path]:
    """The ``*.py``, README and ``pyproject.toml`` files under ``root``, sorted, skipping
    :data:`SOURCE_SKIP_DIRS`, hidden folders and ``*.egg-info``."""
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames
            if d not in SOURCE_SKIP_DIRS and not d.startswith(".") and not d.endswith(".egg-info")
        )
        for name in sorted(filenames):
            if name.endswith(".py") or name.upper().startswith("README") or name == "pyproject.toml":
                p = Path(dirpath) / name
                if p.is_file():
                    files.append(p)
    return files


def _claim(tmp: Path, target: Path) -> bool:
    """Put the staged ``tmp`` at ``target`` unless ``target`` exists (atomic create-if-absent)."""
    try:
        os.link(tmp, target)  # fails if target exists
    except FileExistsError:
        return False
    except OSError:
        # No hard links on this file system: reserve the name exclusively, then move the bytes in.
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            return False
        os.replace(tmp, target)
    return True


# the temp file of a zip being published (stage_bytes: mkstemp's 8 random characters)
LEFTOVER = re.compile(r"\.submission-.*\.zip\.[a-z0-9_]{8}\.tmp")


def _publish_exclusive(out: Path, base: str, payload: bytes) -> Path:
    """Create ``out/base`` (or ``-2``, ``-3``, ... before ``.zip``) holding ``payload``; never
    overwrite. Under the folder's lock, which makes removing a killed publisher's temp file safe."""
    stem, ext = os.path.splitext(base)
    with dir_lock(out):
        remove_quiet(*(p for p in out.iterdir() if LEFTOVER.fullmatch(p.name) and p.is_file()))
        tmp = stage_bytes(out, base, payload)
        try:
            for n in range(1, 10_000):
                target = out / (base if n == 1 else f"{stem}-{n}{ext}")
                fault_point("submission.publish")
                if _claim(tmp, target):
                    fsync_dir(out)
                    return target
            raise EnsembleError(f"{out}: could not find a free name for {base}")
        finally:
            remove_quiet(tmp)


def checked_files(pred_dir: str | Path, data_dir: str | Path) -> dict[tuple[str, str], CheckedFile]:
    """The six files of ``pred_dir`` as validated against ``data_dir``; raises with every problem."""
    problems, found = check_folder(pred_dir, data_dir, None, OUTPUT_SPLITS)
    if problems:
        raise EnsembleError(f"{pred_dir}: refusing to build a submission, in the leaderboard files:\n"
                            + report(problems, found))
    return found


def ensemble_record(pred_dir: str | Path, found: dict[tuple[str, str], CheckedFile], sample: bool,
                    force: bool = False, claimed: dict | None = None) -> dict[str, object]:
    """The manifest's ``ensemble``: the one named by the stamp ``predict`` left in ``pred_dir``,
    checked against ``found``; ``name`` :data:`UNSTAMPED` for a folder without a stamp (or the
    ``claimed`` saved ensemble, unverified). Files that disagree with their stamp are refused
    unless ``force``, which records them as unverified with the disagreements; a folder that an
    interrupted ``predict`` left (its stamp still says writing) is refused even then."""
    check = check_stamp(pred_dir, found)
    if check.incomplete:
        raise EnsembleError("refusing to build a submission: " + "\n".join(check.mismatches)
                            + " (--force does not apply: the files are not one ensemble's)")
    if check.mismatches and not force:
        raise EnsembleError(f"{pred_dir}: the files do not match the stamp `ensemble predict` left:\n"
                            + "\n".join(check.mismatches)
                            + "\nrun `ensemble predict` again, or pass --force to submit them marked as unverified")
    stamp = check.stamp
    if stamp is None:
        record: dict[str, object] = {"name": UNSTAMPED}
        if claimed is not None:
            record = {"name": claimed["name"], "created": claimed.get("created"), "tasks": claimed.get("tasks"),
                      "named_by": "--ensemble (no stamp)"}
    else:
        if claimed is not None and claimed["name"] != stamp.get("ensemble"):
            raise EnsembleError(f"{pred_dir}: written by ensemble {stamp.get('ensemble')} (its stamp says), "
                                f"not {claimed['name']}; leave out --ensemble or predict with it again")
        record = {"name": stamp.get("ensemble"), "created": stamp.get("ensemble_created"),
                  "tasks": stamp.get("tasks"), "data": stamp.get("data"), "predicted": stamp.get("created")}
    record["verified"] = stamp is not None and not check.mismatches
    if check.mismatches:
        record["stamp_mismatches"] = check.mismatches
    record["sample_data"] = sample or made_from_sample(stamp)
    return record


def _source_code(include_source: Path | None) -> list[tuple[str, bytes]]:
    """``(code/<relative path>, bytes)`` of each of :func:`source_files`; none without a folder."""
    if include_source is None:
        return []
    root = Path(include_source)
    if not root.is_dir():
        raise EnsembleError(f"{root}: source folder not found; expected the project folder to include as code/")
    return [("code/" + p.relative_to(root).as_posix(), p.read_bytes()) for p in source_files(root)]


def _zip_bytes(entries: list[tuple[str, bytes]], now: datetime) -> bytes:
    """A deflated zip of ``entries`` in order, each dated ``now`` (1980 at the earliest), mode 0644."""
    stamp = (max(now.year, 1980), now.month, now.day, now.hour, now.minute, now.second)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, payload in entries:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, payload)
    return buf.getvalue()


def _prediction_entries(
    found: dict[tuple[str, str], CheckedFile]
) -> tuple[list[tuple[str, bytes]], dict[str, dict[str, object]]]:
    """The six files as zip entries ``predictions/<name>``, in task and split order, and the
    manifest's record (sha256, rows, bytes) of each."""
    entries: list[tuple[str, bytes]] = []
    predictions: dict[str, dict[str, object]] = {}
    for task in TASK_NAMES:
        for s in OUTPUT_SPLITS:
            checked = found[(task, s)]
            name = f"predictions/{checked.path.name}"
            entries.append((name, checked.payload))
            predictions[name] = {"sha256": hashlib.sha256(checked.payload).hexdigest(),
                                 "rows": len(checked.values), "bytes": len(checked.payload)}
    return entries, predictions


def make_submission(pred_dir: str | Path, out_dir: str | Path, data_dir: str | Path, ensemble_info: dict,
                    mean_dev: float | None, **options) -> Path:
    """Validate ``pred_dir`` (:func:`checked_files`) and :func:`pack` it into a new zip in
    ``out_dir`` (``options``: its ``include_source``, ``now``, ``message``); returns the zip's path."""
    return pack(checked_files(pred_dir, data_dir), out_dir, ensemble_info, mean_dev, **options)


def pack(
    found: dict[tuple[str, str], CheckedFile],
    out_dir: str | Path,
    ensemble_info: dict,
    mean_dev: float | None,
    include_source: Path | None = None,
    now: datetime | None = None,
    message: str | None = None,
) -> Path:
    """Pack the validated files :func:`checked_files` returned into a new zip in ``out_dir``.

    The zip holds ``predictions/<the six files>`` (the very bytes validated),
    ``MANIFEST.json`` (sha256 and row count of each file, ``ensemble_info``, ``mean_dev``,
    ``message``, creation time, tool version) and, when ``include_source`` is a folder, its ``*.py``,
    README and ``pyproject.toml`` files under ``code/`` (skipping .venv, checkpoints,
    predictions, submissions, .git, __pycache__ and other hidden folders). An existing zip is
    never overwritten: a taken name gets ``-2``, ``-3``, ...
    """
    if mean_dev is not None and not math.isfinite(mean_dev):
        raise EnsembleError(f"mean dev score is {mean_dev!r}; expected a finite number or none")
    code = _source_code(include_source)
    now = now or datetime.now().astimezone()
    entries, predictions = _prediction_entries(found)
    manifest = {
        "format": "cs224n-multitask-leaderboard-submission",
        "tool": "ensemble",
        "tool_version": _tool_version(),
        "created": now.isoformat(timespec="seconds"),
        "mean_dev": mean_dev,
        "message": message,
        "ensemble": ensemble_info,
        "predictions": predictions,
        "code_files": [name for name, _ in code],
    }
    entries += code
    entries.append((MANIFEST_NAME, (json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n").encode("utf-8")))
    out = Path(out_dir)
    make_folder(out, "the submission zips")
    return _publish_exclusive(out, submission_name(now, mean_dev), _zip_bytes(entries, now))


MANIFEST_LIMIT = 1 << 20   # a submission's MANIFEST.json is read only up to this size (1 MiB)


def _listed(path: Path) -> dict[str, object]:
    """One zip's row of :func:`list_submissions`; ``damaged`` says why when it cannot be read (its
    ``MANIFEST.json`` member checked before it is read, then read through
    :class:`ensemble.documents.SubmissionManifest`)."""
    try:
        with zipfile.ZipFile(path) as zf:
            raw = read_zip_member(zf, MANIFEST_NAME, path, MANIFEST_LIMIT)
        manifest = documents.read(f"{path}: {MANIFEST_NAME}", documents.SubmissionManifest,
                                  "the manifest `ensemble submit` writes", raw)[0]
    except KeyError:
        return {"file": path.name, "damaged": "no MANIFEST.json"}
    except EnsembleError as exc:
        return {"file": path.name, "damaged": str(exc).removeprefix(f"{path}: ")}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, NotImplementedError) as exc:
        return {"file": path.name, "damaged": f"not a readable zip ({exc})"}
    ens = manifest.ensemble or documents.SubmittedEnsemble()
    return {"file": path.name, "created": manifest.created, "message": manifest.message, "ensemble": ens.name,
            "verified": ens.verified, "mean_dev": manifest.mean_dev, "sample_data": ens.sample_data, "damaged": None}


def list_submissions(out_dir: str | Path) -> list[dict[str, object]]:
    """Each ``*.zip`` of ``out_dir``, oldest first (by when it was written), with its manifest's
    time, message, ensemble and mean dev score; a zip that cannot be read is listed with ``damaged`` set."""
    out = Path(out_dir)
    if not out.exists():   # nothing submitted yet: an empty list
        return []
    if not out.is_dir():
        raise EnsembleError(f"{out}: not a folder; expected the folder `ensemble submit --out` writes zips to")
    zips = [p for p in out.glob("*.zip") if p.is_file()]
    return [_listed(p) for p in sorted(zips, key=lambda p: (p.stat().st_mtime_ns, p.name))]
