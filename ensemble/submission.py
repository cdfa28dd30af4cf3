"""The submission zip: the six validated leaderboard files, a manifest and, if asked, the code.

A zip is published under a new name (``submission-YYYYmmdd-HHMMSS-dev0.7908.zip``, then ``-2``,
``-3``, ... when taken) and never overwrites an earlier one.

Pure Python; no torch, typer or rich.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

from .errors import EnsembleError
from .files import fsync_dir, remove_quiet, stage_bytes
from .tasks import TASK_NAMES
from .validate import OUTPUT_SPLITS, CheckedFile, check_folder, format_problems

__all__ = ["SOURCE_SKIP_DIRS", "make_submission", "submission_name", "source_files"]

SOURCE_SKIP_DIRS = frozenset({".venv", "venv", "checkpoints", "predictions", "submissions", ".git", "__pycache__"})


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


def _publish_exclusive(out: Path, base: str, payload: bytes) -> Path:
    """Create ``out/base`` (or ``-2``, ``-3``, ... before ``.zip``) holding ``payload``; never overwrite."""
    stem, ext = os.path.splitext(base)
    tmp = stage_bytes(out, base, payload)
    try:
        for n in range(1, 10_000):
            target = out / (base if n == 1 else f"{stem}-{n}{ext}")
            if _claim(tmp, target):
                fsync_dir(out)
                return target
        raise EnsembleError(f"{out}: could not find a free name for {base}")
    finally:
        remove_quiet(tmp)


def _validated(pred_dir: str | Path, data_dir: str | Path) -> dict[tuple[str, str], CheckedFile]:
    problems, found = check_folder(pred_dir, data_dir, None, OUTPUT_SPLITS)
    if problems:
        raise EnsembleError(
            f"{pred_dir}: refusing to build a submission, {len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''} in the leaderboard files:\n" + format_problems(problems)
        )
    return found


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


def make_submission(
    pred_dir: str | Path,
    out_dir: str | Path,
    data_dir: str | Path,
    ensemble_info: dict,
    mean_dev: float | None,
    include_source: Path | None = None,
    now: datetime | None = None,
) -> Path:
    """Validate ``pred_dir`` and pack it into a new zip in ``out_dir``; returns the zip's path.

    The zip holds ``predictions/<the six files>`` (the very bytes validated),
    ``MANIFEST.json`` (sha256 and row count of each file, ``ensemble_info``, ``mean_dev``,
    creation time, tool version) and, when ``include_source`` is a folder, its ``*.py``,
    README and ``pyproject.toml`` files under ``code/`` (skipping .venv, checkpoints,
    predictions, submissions, .git, __pycache__ and other hidden folders). An existing zip is
    never overwritten: a taken name gets ``-2``, ``-3``, ...
    """
    if mean_dev is not None and not math.isfinite(mean_dev):
        raise EnsembleError(f"mean dev score is {mean_dev!r}; expected a finite number or none")
    found = _validated(pred_dir, data_dir)
    code = _source_code(include_source)
    now = now or datetime.now().astimezone()
    entries, predictions = _prediction_entries(found)
    manifest = {
        "format": "cs224n-multitask-leaderboard-submission",
        "tool": "ensemble",
        "tool_version": _tool_version(),
        "created": now.isoformat(timespec="seconds"),
        "mean_dev": mean_dev,
        "ensemble": ensemble_info,
        "predictions": predictions,
        "code_files": [name for name, _ in code],
    }
    entries += code
    entries.append(("MANIFEST.json", (json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n").encode("utf-8")))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return _publish_exclusive(out, submission_name(now, mean_dev), _zip_bytes(entries, now))
