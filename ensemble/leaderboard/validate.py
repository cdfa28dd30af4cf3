"""What a folder of leaderboard files must hold, and the check of one against the input files.

The six files are ``{task}-{split}-output.csv`` for sst/para/sts and the splits in
:data:`OUTPUT_SPLITS`; each is the task's header line, then one ``<id> , <value> \\n`` row per
input id. :func:`check_folder` reads each file once and returns its problems together with the
very bytes and values it checked, so that scoring and the submission zip use what was validated.

``predict`` also leaves a stamp, :data:`STAMP_NAME`, saying what made the files (the ensemble, its
members' prediction hashes, the data files' hashes and each file's sha256); the check ignores it,
and :func:`check_stamp` compares it with the files.

Pure Python; no torch, typer or rich.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .. import data as data_mod
from .. import documents
from ..errors import EnsembleError
from ..files import file_sha256, read_input
from ..predfile import id_listing
from ..tasks import NUMBER, TASK_NAMES, TASKS, get_task

__all__ = [
    "OUTPUT_SPLITS",
    "STAMP_NAME",
    "Problem",
    "CheckedFile",
    "StampCheck",
    "check_split",
    "check_folder",
    "validate_dir",
    "format_problems",
    "report",
    "check_stamp",
    "read_stamp",
    "made_from_sample",
]

OUTPUT_SPLITS = ("dev", "test")
STAMP_NAME = ".ensemble-stamp.json"
STAMP_FORMAT = "ensemble-leaderboard-stamp"
STATE_WRITING, STATE_COMPLETE = "writing", "complete"   # a stamp without a state is complete (older versions)
_ROW = re.compile(r"([^\s,]+) , ([^\s,]+) ")


def check_split(split: str) -> None:
    """Raise unless ``split`` is one of :data:`OUTPUT_SPLITS`."""
    if split not in OUTPUT_SPLITS:
        raise EnsembleError(f"unknown leaderboard split {split!r}; expected one of {', '.join(OUTPUT_SPLITS)}")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line is not None else "")
        return f"{where}: " + (f"{self.column}: " if self.column else "") + self.message


@dataclass(frozen=True)
class CheckedFile:
    """One leaderboard file as :func:`check_folder` read it: its bytes, its valid values by id,
    the input split it was checked against, its rows and how many of their ids the split holds."""
    path: Path
    payload: bytes
    values: dict[str, float]
    split: data_mod.Split
    rows: int = 0
    matched: int = 0


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


def _lines(label: str, payload: bytes, header: str) -> tuple[list[str], list[Problem]]:
    """The file's lines without their newlines and the problems of its text, last newline and
    header; no lines when the file is not UTF-8 or empty."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = payload[: exc.start].count(b"\n") + 1
        return [], [Problem(label, line, None, "not valid UTF-8 text")]
    if not text:
        return [], [Problem(label, 1, None, f"empty file; expected the header {header!r}")]
    problems: list[Problem] = []
    lines = text.split("\n")
    last = lines.pop()  # "" when the file ends with a newline
    if last != "":
        lines.append(last)
        problems.append(Problem(label, len(lines), None, "the last line has no newline; expected every line to end with '\\n'"))
    if lines[0] + "\n" != header:
        problems.append(Problem(label, 1, None, f"header is {lines[0] + chr(10)!r}; expected exactly {header!r}"))
    return lines, problems


def _shape_message(row: str) -> str:
    """Why ``row`` is not ``<id> , <value> ``."""
    if row.endswith("\r"):
        return "line ends with '\\r\\n'; expected '<id> , <value> ' followed by '\\n' only"
    if not row.strip():
        return "empty line; expected '<id> , <value> '"
    return (
        f"row is {row!r}; expected '<id> , <value> ' (space, comma, space between id and value, "
        f"a space before the newline)"
    )


def _check_rows(
    label: str, rows: list[str], task: str, split: data_mod.Split
) -> tuple[list[Problem], dict[str, float], dict[str, int]]:
    """Problems of the rows after the header (line 2 on), the valid values by id, and the line
    where each id was first seen."""
    problems: list[Problem] = []
    values: dict[str, float] = {}
    expected = set(split.ids)
    tolerated = {i for _, i in split.skipped}
    seen: dict[str, int] = {}
    for line_no, row in enumerate(rows, start=2):
        m = _ROW.fullmatch(row)
        if m is None:
            problems.append(Problem(label, line_no, None, _shape_message(row)))
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
    return problems, values, seen


def _check_output(
    label: str, payload: bytes, task: str, split: data_mod.Split
) -> tuple[list[Problem], dict[str, float], int, int]:
    """Problems of one leaderboard file's bytes against its input ``split``, its values by id,
    its row count and how many of its ids ``split`` holds."""
    lines, problems = _lines(label, payload, TASKS[task].output_header + "\n")
    if not lines:
        return problems, {}, 0, 0
    row_problems, values, seen = _check_rows(label, lines[1:], task, split)
    known = set(split.ids) | {i for _, i in split.skipped}
    problems.extend(row_problems)
    missing = [i for i in split.ids if i not in seen]
    if missing:
        problems.append(
            Problem(label, None, "id",
                    f"{len(missing)} id{'s' if len(missing) != 1 else ''} of {split.path.name} "
                    f"without a row: {id_listing(missing)}")
        )
    return problems, values, len(lines) - 1, sum(1 for i in seen if i in known)


def check_output(label: str, payload: bytes, task: str, split: data_mod.Split
                 ) -> tuple[list[Problem], dict[str, float]]:
    """The problems of one leaderboard file's bytes against its input ``split`` and its valid values by id
    (the ids of Quora rows the reader skips for an empty label included: tolerated, not required)."""
    problems, values, _, _ = _check_output(label, payload, task, split)
    return problems, values


def check_folder(
    pred_dir: str | Path, data_dir: str | Path, tasks: Iterable[str] | None, splits: Iterable[str]
) -> tuple[list[Problem], dict[tuple[str, str], CheckedFile]]:
    """The problems of the leaderboard files in ``pred_dir`` (all tasks when ``tasks`` is None)
    and, by ``(task, split)``, each file that could be read. See :func:`validate_dir`. A missing
    ``pred_dir`` is an EnsembleError ("no such folder")."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise EnsembleError(f"{pred_dir}: no such folder; expected the folder of leaderboard files "
                            "that `ensemble predict` writes")
    problems: list[Problem] = []
    found: dict[tuple[str, str], CheckedFile] = {}
    task_list = TASK_NAMES if tasks is None else tuple(tasks)
    split_list = tuple(splits)
    for s in split_list:
        check_split(s)
    for task in task_list:
        t = get_task(task)
        for s in split_list:
            path = pred_dir / t.output_name(s)
            label = str(path)
            split = data_mod.read_split(data_dir, task, s)
            try:
                payload = read_input(path)
            except FileNotFoundError:
                problems.append(Problem(label, None, None,
                                        f"missing; expected the {task} {s} predictions for {split.path.name}"))
                continue
            except OSError as exc:
                problems.append(Problem(label, None, None, f"cannot read ({exc.strerror or exc})"))
                continue
            probs, values, rows, matched = _check_output(label, payload, task, split)
            problems.extend(probs)
            found[(task, s)] = CheckedFile(path, payload, values, split, rows, matched)
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
    return check_folder(pred_dir, data_dir, tasks, splits)[0]


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


def _per_file(problems: Sequence[Problem]) -> str:
    """``18 problems: sst-dev-output.csv 3, ...`` (the count of problems of each file)."""
    counts: dict[str, int] = {}
    for p in problems:
        counts[Path(p.file).name] = counts.get(Path(p.file).name, 0) + 1
    return (f"{len(problems)} problem{'s' if len(problems) != 1 else ''}: "
            + ", ".join(f"{name} {n}" for name, n in counts.items()))


def report(problems: Sequence[Problem], found: dict[tuple[str, str], CheckedFile]) -> str:
    """The problems for a person: one line per problem (:func:`format_problems`), then the count per
    file. A file none of whose ids is in the data gets one line instead of a line per row, and when
    that is so of every file read, one line says so for all."""
    if not problems:
        return "no problems"
    strangers = {str(c.path): c for c in found.values() if c.rows and not c.matched}
    if strangers and len(strangers) == sum(1 for c in found.values() if c.rows):
        return "no id matches: were these made from other data?\n" + _per_file(problems)
    lines = [f"{label}: no id matches {c.split.path.name}: were these made from other data?"
             for label, c in strangers.items()]
    rest = [p for p in problems if p.file not in strangers]
    return "\n".join(lines + ([format_problems(rest)] if rest else []) + [_per_file(problems)])


@dataclass(frozen=True)
class StampCheck:
    """What :func:`check_stamp` found: the stamp (None when absent or unreadable), how it
    disagrees with the files (empty when it matches, or when there is none) and whether it says a
    ``predict`` was interrupted while replacing the files (refused even with ``--force``)."""
    stamp: dict | None
    mismatches: list[str] = field(default_factory=list)
    incomplete: bool = False


def read_stamp(pred_dir: Path) -> StampCheck:
    """The stamp in ``pred_dir`` as written (None when absent), or why it cannot be read."""
    path = pred_dir / STAMP_NAME
    what = "the stamp `ensemble predict` writes"
    if not path.exists() and not path.is_symlink():
        return StampCheck(None)
    try:
        doc = documents.load_json(path, what=what)
    except EnsembleError as exc:
        return StampCheck(None, [str(exc)])
    problem = documents.problem(documents.PredictStamp, doc)
    if problem:
        return StampCheck(None, [f"{path}: {problem}; expected {what}"])
    return StampCheck(doc, incomplete=doc.get("state", STATE_COMPLETE) != STATE_COMPLETE)


def _interrupted(pred_dir: Path, stamp: dict, found: dict[tuple[str, str], CheckedFile]) -> list[str]:
    """What an interrupted write left: which files are the new version and which the previous."""
    old = stamp.get("replacing") or {}   # checked where the stamp was read (documents.PredictStamp)
    new_name, old_name = stamp.get("ensemble") or "new", old.get("ensemble") or "previous"
    old_files = old.get("files") or {}
    lines = [f"{pred_dir}: an `ensemble predict` was interrupted while replacing these files "
             f"(ensemble {new_name} over {old_name}); the folder may mix the two:"]
    for checked in sorted(found.values(), key=lambda c: c.path.name):
        sha, name = hashlib.sha256(checked.payload).hexdigest(), checked.path.name
        is_new, is_old = stamp["files"].get(name) == sha, old_files.get(name) == sha
        what = (f"the new version ({new_name}), the same bytes as the previous" if is_new and is_old else
                f"the new version ({new_name})" if is_new else
                f"the previous version ({old_name})" if is_old else "neither version")
        lines.append(f"{name}: {what}")
    return lines + [f"run `ensemble predict --out {pred_dir}` again to write all of them"]


def check_stamp(pred_dir: str | Path, found: dict[tuple[str, str], CheckedFile]) -> StampCheck:
    """Compare the stamp in ``pred_dir`` with the files :func:`check_folder` read: each file's
    sha256 and the sha256 of the data file it was checked against; a writing stamp (an
    interrupted ``predict``) says which file is which version."""
    read = read_stamp(Path(pred_dir))
    if read.stamp is None:
        return read
    if read.incomplete:
        return StampCheck(read.stamp, _interrupted(Path(pred_dir), read.stamp, found), incomplete=True)
    files, data = read.stamp["files"], read.stamp.get("data") or {}
    mismatches: list[str] = []
    for checked in found.values():
        name, data_name = checked.path.name, checked.split.path.name
        if name not in files:
            mismatches.append(f"{name}: not written by `ensemble predict` (not in its stamp)")
        elif files[name] != hashlib.sha256(checked.payload).hexdigest():
            mismatches.append(f"{name}: changed after `ensemble predict` wrote it (sha256 differs from its stamp)")
        elif data.get(data_name) not in (None, checked.split.sha256):
            mismatches.append(f"{name}: made from another version of {data_name} than the one checked against")
    if not mismatches:
        mismatches = _far_below(read.stamp, found)
    return StampCheck(read.stamp, mismatches)


FAR_BELOW = 0.05   # a dev file scoring this much under its ensemble's recorded dev score is refused


def file_dev_score(checked: CheckedFile) -> float:
    """The task metric of a checked dev file (its rounded values joined by id to the labels): sst and
    para accuracy, sts Pearson r."""
    import numpy as np

    from ..metrics import pearson
    split = checked.split
    preds = np.fromiter((checked.values[i] for i in split.ids), dtype=np.float64, count=len(split))
    if get_task(split.task).metric == "pearson":
        return pearson(preds, split.labels)
    return float(np.mean(preds == split.labels)) if len(split.labels) else 0.0


def _far_below(stamp: dict, found: dict[tuple[str, str], CheckedFile]) -> list[str]:
    """The dev files whose score is far (:data:`FAR_BELOW`) under the dev score the saved ensemble
    recorded for that task in the stamp: files that do not reproduce the ensemble (e.g. extreme
    weights collapsing every row to one class)."""
    tasks = stamp.get("tasks") if isinstance(stamp.get("tasks"), dict) else {}
    out = []
    for (task, s), checked in sorted(found.items()):
        entry = tasks.get(task)
        recorded = entry.get("dev_score") if isinstance(entry, dict) else None
        if s != "dev" or isinstance(recorded, bool) or not isinstance(recorded, (int, float)) \
                or not math.isfinite(recorded):
            continue
        got = file_dev_score(checked)
        if not got >= recorded - FAR_BELOW:
            out.append(f"{checked.path.name}: scores {got:.4f} on dev, far below the {recorded:.4f} that ensemble "
                       f"{stamp.get('ensemble')} recorded for {task} (more than {FAR_BELOW} lower): the file does "
                       "not reproduce the ensemble; check its weights (`ensemble show`) and run `ensemble select` "
                       "and `ensemble predict` again")
    return out


def made_from_sample(stamp: dict | None) -> bool:
    """Whether the stamp's data files are the packaged sample's (same names, same sha256)."""
    data = (stamp or {}).get("data") or {}
    sample = data_mod.PACKAGE_SAMPLE
    return bool(data) and all((sample / n).is_file() and file_sha256(sample / n) == h for n, h in data.items())
