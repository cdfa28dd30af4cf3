"""Leaderboard files: writing them byte for byte, checking a folder of them, scoring the dev
files, and packing a submission zip.

The six files (``{task}-{split}-output.csv`` for sst/para/sts and dev/test) are exactly what the
course's code writes::

    id \\t Predicted_Sentiment \\n          header (TASKS[task].output_header + "\\n")
    <id> , <prediction> \\n                 one row per input id

with the sst class as an int (``3``), the paraphrase label as the course writes it (``0.0`` /
``1.0``) and the sts score as the raw float (``str(float)``, not clipped).

Pure Python + numpy; no torch, typer or rich.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import secrets
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from . import data as data_mod
from .errors import EnsembleError
from .files import fsync_dir, stage_bytes
from .metrics import pearson, round_predictions
from .predfile import _listing
from .tasks import NUMBER, TASK_NAMES, TASKS, get_task, is_plain_id

__all__ = [
    "Problem",
    "OUTPUT_SPLITS",
    "leaderboard_bytes",
    "write_leaderboard",
    "validate_dir",
    "format_problems",
    "score_dir",
    "make_submission",
    "submission_name",
]

OUTPUT_SPLITS = ("dev", "test")
SOURCE_SKIP_DIRS = frozenset({".venv", "venv", "checkpoints", "predictions", "submissions", ".git", "__pycache__"})
_ROW = re.compile(r"([^\s,]+) , ([^\s,]+) ")
_LIST = 5



def _split(split: str) -> None:
    if split not in OUTPUT_SPLITS:
        raise EnsembleError(f"unknown leaderboard split {split!r}; expected one of {', '.join(OUTPUT_SPLITS)}")


# --------------------------------------------------------------------------- writing


def leaderboard_bytes(task: str, ids: Sequence[str], values_unrounded: np.ndarray) -> bytes:
    """The leaderboard file for ``task``: header, then ``f"{id} , {value} \\n"`` per id, in order.

    ``values_unrounded`` has shape ``(n, TASKS[task].n_outputs)``: sst class probabilities
    (argmax, first maximum on ties), para probability (rounded half to even: 0.5 -> ``0.0``),
    sts raw score (written as ``str(float)``, not clipped).
    """
    t = get_task(task)
    vals = np.asarray(values_unrounded, dtype=np.float64)
    if vals.ndim == 1 and t.n_outputs == 1:
        vals = vals.reshape(-1, 1)
    if vals.ndim != 2 or vals.shape[1] != t.n_outputs:
        raise EnsembleError(f"{task}: predictions have shape {vals.shape}; expected (n, {t.n_outputs})")
    ids = [str(i) for i in ids]
    if len(ids) != vals.shape[0]:
        raise EnsembleError(f"{task}: {len(ids)} ids for {vals.shape[0]} prediction rows; expected one id per row")
    seen: set[str] = set()
    for i in ids:
        if not is_plain_id(i):
            raise EnsembleError(f"{task}: id {i!r} is empty or holds a comma, quote or whitespace; expected a plain id")
        if i in seen:
            raise EnsembleError(f"{task}: id {i!r} appears twice; expected each id once")
        seen.add(i)
    if not np.isfinite(vals).all():
        r = int(np.argwhere(~np.isfinite(vals))[0][0])
        raise EnsembleError(f"{task}: prediction for id {ids[r]!r} is {vals[r].tolist()}; expected finite numbers")
    if t.kind == "binary" and ((vals < 0) | (vals > 1)).any():
        r = int(np.argwhere((vals < 0) | (vals > 1))[0][0])
        raise EnsembleError(f"{task}: probability for id {ids[r]!r} is {float(vals[r, 0])!r}; expected a value in [0, 1]")
    rounded = round_predictions(task, vals)
    if t.kind == "classes":
        texts = [str(int(v)) for v in rounded.tolist()]
    else:
        # + 0.0 turns a -0.0 (round of -0.0) into 0.0; str(float) is how the course's code writes.
        texts = [str(float(v) + 0.0) for v in rounded.tolist()]
    parts = [t.output_header, "\n"]
    parts.extend(f"{i} , {v} \n" for i, v in zip(ids, texts))
    return "".join(parts).encode("utf-8")


def _unlink_quiet(p: str | Path) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass


def write_leaderboard(
    out_dir: str | Path, outputs: Mapping[tuple[str, str], tuple[Sequence[str], np.ndarray]]
) -> list[Path]:
    """Write ``{task}-{split}-output.csv`` for each ``(task, split) -> (ids, unrounded values)``.

    All-or-nothing as far as the file system allows: every file's bytes are built (and checked)
    first, then staged as fsynced temp files in ``out_dir``, then each is ``os.replace``'d over
    its target. A failure before the replace loop leaves every previous file untouched; a failure
    inside it puts back the files already replaced (from hard-link backups taken before the loop).
    Returns the written paths in the order given.
    """
    out = Path(out_dir)
    payloads: list[tuple[Path, bytes]] = []
    for (task, split), (ids, values) in outputs.items():
        _split(split)
        payloads.append((out / get_task(task).output_name(split), leaderboard_bytes(task, ids, values)))
    out.mkdir(parents=True, exist_ok=True)

    staged: list[tuple[Path, str]] = []
    backups: dict[Path, str] = {}
    try:
        for target, payload in payloads:
            staged.append((target, stage_bytes(out, target.name, payload)))
        for target, _ in staged:
            if target.exists():
                bak = str(out / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.bak")
                try:
                    os.link(target, bak)
                    backups[target] = bak
                except OSError:
                    pass  # no hard links here: no rollback for this file
    except BaseException as exc:
        for _, tmp in staged:
            _unlink_quiet(tmp)
        for bak in backups.values():
            _unlink_quiet(bak)
        if isinstance(exc, OSError):
            raise EnsembleError(
                f"{out}: cannot write the leaderboard files ({exc.strerror or exc}); the previous files are untouched"
            ) from exc
        raise

    replaced: list[Path] = []
    try:
        for target, tmp in staged:
            os.replace(tmp, target)
            replaced.append(target)
    except BaseException as exc:
        not_restored: list[str] = []
        for target in replaced:
            bak = backups.pop(target, None)
            try:
                if bak is not None:
                    os.replace(bak, target)
                else:
                    os.unlink(target)  # it did not exist before
            except OSError:
                not_restored.append(f"{target}" + (f" (previous version kept at {bak})" if bak else ""))
        for _, tmp in staged:
            _unlink_quiet(tmp)
        for bak in backups.values():
            _unlink_quiet(bak)
        if not isinstance(exc, Exception):
            raise
        if not_restored:
            raise EnsembleError(
                f"{out}: writing the leaderboard files failed ({exc}); already replaced and not restored: "
                + "; ".join(not_restored) + "; the others are untouched"
            ) from exc
        raise EnsembleError(
            f"{out}: writing the leaderboard files failed ({exc}); the previous files are untouched"
        ) from exc
    for bak in backups.values():
        _unlink_quiet(bak)
    fsync_dir(out)
    return [target for target, _ in payloads]


# --------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line is not None else "")
        return f"{where}: " + (f"{self.column}: " if self.column else "") + self.message


def _value_problem(task: str, text: str) -> tuple[str | None, float | None]:
    """(problem message or None, parsed value)."""
    kind = TASKS[task].kind
    if kind == "classes":
        expected = "an integer class 0..4 (e.g. 3)"
    elif kind == "binary":
        expected = "0.0 or 1.0"
    else:
        expected = "a finite number"
    if not NUMBER.match(text):
        return f"value {text!r} is not a number; expected {expected}", None
    v = float(text)
    if not math.isfinite(v):
        return f"value {text!r} is not finite; expected {expected}", None
    if kind == "classes" and (v != int(v) or not 0 <= v <= 4):
        return f"value {text!r} is not a class; expected {expected}", None
    if kind == "binary" and v not in (0.0, 1.0):
        return f"value {text!r} is not a label; expected {expected}", None
    return None, v


def _check_output(
    label: str, payload: bytes, task: str, split: data_mod.Split
) -> tuple[list[Problem], dict[str, float]]:
    """Problems of one leaderboard file's bytes against its input ``split``, and its values by id."""
    t = TASKS[task]
    problems: list[Problem] = []
    values: dict[str, float] = {}
    header = (t.output_header + "\n").encode("utf-8")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = payload[: exc.start].count(b"\n") + 1
        return [Problem(label, line, None, "not valid UTF-8 text")], values
    if not text:
        return [Problem(label, 1, None, f"empty file; expected the header {header.decode()!r}")], values
    lines = text.split("\n")
    last = lines.pop()  # "" when the file ends with a newline
    if last != "":
        lines.append(last)
        problems.append(Problem(label, len(lines), None, "the last line has no newline; expected every line to end with '\\n'"))
    if lines[0] + "\n" != header.decode("utf-8"):
        problems.append(Problem(label, 1, None, f"header is {lines[0] + chr(10)!r}; expected exactly {header.decode()!r}"))

    expected = set(split.ids)
    tolerated = {i for _, i in split.skipped}
    seen: dict[str, int] = {}
    for n in range(1, len(lines)):
        line_no = n + 1
        row = lines[n]
        m = _ROW.fullmatch(row)
        if m is None:
            if row.endswith("\r"):
                msg = f"line ends with '\\r\\n'; expected '<id> , <value> ' followed by '\\n' only"
            elif not row.strip():
                msg = "empty line; expected '<id> , <value> '"
            else:
                msg = (
                    f"row is {row!r}; expected '<id> , <value> ' (space, comma, space between id and value, "
                    f"a space before the newline)"
                )
            problems.append(Problem(label, line_no, None, msg))
            continue
        sid, vtext = m.group(1), m.group(2)
        if sid in seen:
            problems.append(Problem(label, line_no, "id", f"id {sid!r} repeats line {seen[sid]}; expected each id once"))
            continue
        seen[sid] = line_no
        if sid not in expected and sid not in tolerated:
            problems.append(Problem(label, line_no, "id", f"id {sid!r} is not in {split.path.name}"))
            continue
        msg, v = _value_problem(task, vtext)
        if msg is not None:
            problems.append(Problem(label, line_no, "value", msg))
            continue
        values[sid] = v
    missing = [i for i in split.ids if i not in seen]
    if missing:
        problems.append(
            Problem(label, None, "id",
                    f"{len(missing)} id{'s' if len(missing) != 1 else ''} of {split.path.name} "
                    f"without a row: {_listing(missing)}")
        )
    return problems, values


def _check_folder(
    pred_dir: str | Path, data_dir: str | Path, tasks: Iterable[str] | None, splits: Iterable[str]
) -> tuple[list[Problem], dict[tuple[str, str], tuple[Path, bytes, dict[str, float], data_mod.Split]]]:
    pred_dir = Path(pred_dir)
    problems: list[Problem] = []
    found: dict[tuple[str, str], tuple[Path, bytes, dict[str, float], data_mod.Split]] = {}
    task_list = TASK_NAMES if tasks is None else tuple(tasks)
    split_list = tuple(splits)
    for s in split_list:
        _split(s)
    for task in task_list:
        t = get_task(task)
        for s in split_list:
            path = pred_dir / t.output_name(s)
            label = str(path)
            split = data_mod.read_split(data_dir, task, s)
            try:
                payload = path.read_bytes()
            except FileNotFoundError:
                problems.append(Problem(label, None, None,
                                        f"missing; expected the {task} {s} predictions for {split.path.name}"))
                continue
            except OSError as exc:
                problems.append(Problem(label, None, None, f"cannot read ({exc.strerror or exc})"))
                continue
            probs, values = _check_output(label, payload, task, split)
            problems.extend(probs)
            found[(task, s)] = (path, payload, values, split)
    return problems, found


def validate_dir(
    pred_dir: str | Path,
    data_dir: str | Path,
    tasks: Iterable[str] | None = None,
    splits: Sequence[str] = OUTPUT_SPLITS,
) -> list[Problem]:
    """Check the leaderboard files in ``pred_dir`` against the input files in ``data_dir``.

    Exact header bytes; each row ``<id> , <value> \\n``; one row per input id and no other
    (the ids of Quora rows skipped for an empty label are tolerated but not required); no
    repeated id; values in range (sst integer 0..4 as ``3`` or ``3.0``, para ``0.0``/``1.0``
    or ``0``/``1``, sts a finite float); missing files. An empty list means all good.
    A missing or malformed input file is an EnsembleError, not a Problem.
    """
    return _check_folder(pred_dir, data_dir, tasks, splits)[0]


def format_problems(problems: Sequence[Problem], per_file: int = 10) -> str:
    """One problem per line, at most ``per_file`` per file (then a count of the rest)."""
    if not problems:
        return "no problems"
    by_file: dict[str, list[Problem]] = {}
    for p in problems:
        by_file.setdefault(p.file, []).append(p)
    out: list[str] = []
    for f, ps in by_file.items():
        out.extend(str(p) for p in ps[:per_file])
        if len(ps) > per_file:
            out.append(f"{f}: ... and {len(ps) - per_file} more problem{'s' if len(ps) - per_file != 1 else ''}")
    return "\n".join(out)


def score_dir(pred_dir: str | Path, data_dir: str | Path, tasks: Iterable[str] | None = None) -> dict[str, float]:
    """The dev metric of each task from the (rounded) dev leaderboard files, joined by id.

    sst/para accuracy, sts Pearson r, over the labelled dev ids. Raises EnsembleError listing
    the problems if a dev file is missing or malformed.
    """
    problems, found = _check_folder(pred_dir, data_dir, tasks, ("dev",))
    if problems:
        raise EnsembleError(
            f"{pred_dir}: cannot score the dev files, {len(problems)} problem{'s' if len(problems) != 1 else ''}:\n"
            + format_problems(problems)
        )
    scores: dict[str, float] = {}
    for (task, _), (_, _, values, split) in found.items():
        preds = np.fromiter((values[i] for i in split.ids), dtype=np.float64, count=len(split))
        labels = split.labels
        if TASKS[task].metric == "pearson":
            scores[task] = pearson(preds, labels)
        else:
            scores[task] = float(np.mean(preds == labels)) if len(labels) else 0.0
    return scores


# --------------------------------------------------------------------------- submission


def _tool_version() -> str:
    try:
        from importlib.metadata import version

        return version("ensemble")
    except Exception:
        return "unknown"


def submission_name(now: datetime, mean_dev: float | None) -> str:
    """``submission-YYYYmmdd-HHMMSS-dev0.7908.zip`` (no dev part when ``mean_dev`` is None)."""
    dev = "" if mean_dev is None else f"-dev{mean_dev:.4f}"
    return f"submission-{now:%Y%m%d-%H%M%S}{dev}.zip"


def _source_files(root: Path) -> list[Path]:
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


def _publish_exclusive(out: Path, base: str, payload: bytes) -> Path:
    """Create ``out/base`` (or ``-2``, ``-3``, ... before ``.zip``) holding ``payload``; never overwrite."""
    stem, ext = os.path.splitext(base)
    tmp = stage_bytes(out, base, payload)
    try:
        for n in range(1, 10_000):
            target = out / (base if n == 1 else f"{stem}-{n}{ext}")
            try:
                os.link(tmp, target)  # fails if target exists: atomic create-if-absent
            except FileExistsError:
                continue
            except OSError:
                # No hard links on this file system: exclusive create, then write.
                try:
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    continue
                with os.fdopen(fd, "wb") as fp:
                    fp.write(payload)
                    fp.flush()
                    os.fsync(fp.fileno())
            fsync_dir(out)
            return target
        raise EnsembleError(f"{out}: could not find a free name for {base}")
    finally:
        _unlink_quiet(tmp)


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
    problems, found = _check_folder(pred_dir, data_dir, None, OUTPUT_SPLITS)
    if problems:
        raise EnsembleError(
            f"{pred_dir}: refusing to build a submission, {len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''} in the leaderboard files:\n" + format_problems(problems)
        )
    code: list[tuple[str, bytes]] = []
    if include_source is not None:
        root = Path(include_source)
        if not root.is_dir():
            raise EnsembleError(f"{root}: source folder not found; expected the project folder to include as code/")
        for p in _source_files(root):
            code.append(("code/" + p.relative_to(root).as_posix(), p.read_bytes()))

    now = now or datetime.now().astimezone()
    stamp = (max(now.year, 1980), now.month, now.day, now.hour, now.minute, now.second)
    manifest = {
        "format": "cs224n-multitask-leaderboard-submission",
        "tool": "ensemble",
        "tool_version": _tool_version(),
        "created": now.isoformat(timespec="seconds"),
        "mean_dev": mean_dev,
        "ensemble": ensemble_info,
        "predictions": {},
        "code_files": [name for name, _ in code],
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        def add(name: str, payload: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, payload)

        for task in TASK_NAMES:
            for s in OUTPUT_SPLITS:
                path, payload, values, _ = found[(task, s)]
                name = f"predictions/{path.name}"
                add(name, payload)
                manifest["predictions"][name] = {
                    "sha256": hashlib.sha256(payload).hexdigest(),
                    "rows": len(values),
                    "bytes": len(payload),
                }
        for name, payload in code:
            add(name, payload)
        add("MANIFEST.json", (json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n").encode("utf-8"))

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return _publish_exclusive(out, submission_name(now, mean_dev), buf.getvalue())
