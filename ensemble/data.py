"""Readers for the course's nine tab-separated input files, exactly as they come.

Pure Python + numpy (no torch, no pandas): the csv module with ``delimiter='\\t'`` reads the
files the way the course's own loader (``csv.DictReader(fp, delimiter='\\t')``) does, so quoted
Quora/STS fields with doubled quotes come out the same.

Quirks handled (see ``shared/data/README.md``):

* a leading unnamed index column (header ``\\tid\\tsentence\\tsentiment``);
* a second index column in ``ids-sst-test-student.csv`` (header ``0\\t\\tid\\tsentence``,
  rows ``1\\t0.0\\t<id>\\t<sentence>``): columns are looked up by name, never by position;
* labels written as floats (``1.0``, ``3.0``) or ints (``3``);
* quoted fields with doubled quotes;
* Quora (``para``) rows with an empty label: skipped and counted in ``Split.skipped_empty``,
  as the course's loader skips them (its ``int(float(''))`` fails inside a ``try``); in every
  other file an empty label is an error.

Text preprocessing is the course's: SST sentences ``.lower().strip()``; pair sentences lowercased
with a space put before each ``. ? , '`` and whitespace collapsed. Ids are ``.lower().strip()``
as the course's loader makes them (the leaderboard files carry those ids).

Every malformed row is an :class:`~ensemble.errors.EnsembleError` naming the file, the 1-based
line (header = line 1) and what was expected.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import EnsembleError, shown
from .files import read_input
from .tasks import NUMBER, SPLITS, TASK_NAMES, TASKS, get_task

__all__ = [
    "Example",
    "Split",
    "read_split",
    "read_file",
    "read_utf8",
    "read_raw",
    "decode_utf8",
    "preprocess_single",
    "preprocess_pair",
    "input_path",
    "PACKAGE_SAMPLE",
    "resolve_data",
    "load_splits",
    "split_hashes",
]


@dataclass(frozen=True)
class Example:
    id: str
    text_a: str
    text_b: str | None
    label: int | float | None


@dataclass
class Split:
    task: str
    split: str
    path: Path
    sha256: str
    examples: list[Example]
    skipped_empty: int
    # (line, id) of each row skipped for an empty label (Quora only), for reporting.
    skipped: list[tuple[int, str]] = field(default_factory=list)
    # Whether the file was read with labels; None: decide from the examples.
    has_labels: bool | None = field(default=None, repr=False)

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.examples]

    @property
    def labelled(self) -> bool:
        if self.has_labels is not None:
            return self.has_labels
        return bool(self.examples) and self.examples[0].label is not None

    @property
    def labels(self) -> np.ndarray:
        if not self.labelled:
            raise EnsembleError(
                f"{self.path}: has no labels (no {TASKS[self.task].label_column!r} column); "
                f"expected a labelled train or dev file"
            )
        import numpy as np   # here: reading the files needs no numpy, and the command line starts faster

        dtype = np.float64 if TASKS[self.task].kind == "regression" else np.int64
        return np.fromiter((e.label for e in self.examples), dtype=dtype, count=len(self.examples))

    def __len__(self) -> int:
        return len(self.examples)

    def by_id(self) -> dict[str, Example]:
        return {e.id: e for e in self.examples}


def preprocess_single(s: str) -> str:
    """The course's SST preprocessing."""
    return s.lower().strip()


def preprocess_pair(s: str) -> str:
    """The course's ``preprocess_string`` for the paraphrase and similarity sentences."""
    return " ".join(
        s.lower().replace(".", " .").replace("?", " ?").replace(",", " ,").replace("'", " '").split()
    )


def input_path(data_dir: str | Path, task: str, split: str) -> Path:
    """Path of the course input file for ``task`` and ``split`` inside ``data_dir``."""
    get_task(task)
    if split not in SPLITS:
        raise EnsembleError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return Path(data_dir) / TASKS[task].file_name(split)


def read_split(data_dir: str | Path, task: str, split: str) -> Split:
    """Read the course file for ``task``/``split`` from ``data_dir`` (labels for train/dev)."""
    path = input_path(data_dir, task, split)
    if not path.exists():   # a FIFO or a folder there is refused by its reader (ensemble.files.read_input)
        expected = ", ".join(TASKS[t].file_name(s) for t in TASK_NAMES for s in SPLITS)
        raise EnsembleError(
            f"{path}: input file not found for task {task!r}, split {split!r}; "
            f"the data folder {Path(data_dir)} must hold the course files: {expected}"
        )
    out = read_file(path, task, labelled=(split != "test"), split=split)
    if split != "test" and not out.examples:
        skipped = f" ({out.skipped_empty} rows skipped for an empty label)" if out.skipped_empty else ""
        raise EnsembleError(f"{path}: no example rows after the header{skipped}; expected at least one "
                            f"labelled row in the {split} file of task {task!r}")
    return out


def _split_from_name(path: Path, task: str) -> str:
    for s in SPLITS:
        if path.name == TASKS[task].file_name(s):
            return s
    return path.stem


def _parse_label(text: str, task: str, where: str) -> int | float:
    t = TASKS[task]
    s = text.strip()
    if t.kind == "classes":
        expected = f"an integer class {int(t.label_min)}..{int(t.label_max)} (e.g. 3 or 3.0)"
    elif t.kind == "binary":
        expected = "0 or 1 (e.g. 0.0 or 1.0)"
    else:
        expected = f"a number from {t.label_min:g} to {t.label_max:g}"
    if not NUMBER.match(s):
        raise EnsembleError(f"{where}: label {t.label_column!r} is {shown(text)}, not a number; expected {expected}")
    v = float(s)
    if not math.isfinite(v) or v < t.label_min or v > t.label_max:
        raise EnsembleError(f"{where}: label {t.label_column!r} is {shown(text)}, out of range; expected {expected}")
    if t.kind == "regression":
        return v
    if v != int(v):
        raise EnsembleError(f"{where}: label {t.label_column!r} is {shown(text)}, not a whole number; expected {expected}")
    return int(v)


def read_file(
    path: str | Path,
    task: str,
    labelled: bool | None = None,
    *,
    split: str | None = None,
) -> Split:
    """Read any file in the course format of ``task`` (e.g. a new input file to predict).

    ``labelled=None`` detects labels from the header (the task's label column present or not);
    ``True`` requires the label column; ``False`` ignores it. ``split`` defaults to the split
    the course file name implies, else the file's stem.
    """
    get_task(task)
    path = Path(path)
    raw, text = read_utf8(path, f"file not found; expected a {task} input file such as {TASKS[task].file_name('dev')}",
                          "a UTF-8 tab-separated file", show_byte=True)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t")
    header, columns, labelled = _read_header(reader, path, task, labelled)
    examples, skipped = _read_rows(reader, path, task, header, columns)
    return Split(
        task=task,
        split=split if split is not None else _split_from_name(path, task),
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        examples=examples,
        skipped_empty=len(skipped),
        skipped=skipped,
        has_labels=bool(labelled),
    )


def read_utf8(path: Path, not_found: str, expected: str, show_byte: bool = False) -> tuple[bytes, str]:
    """A text file's bytes and their UTF-8 text (BOM dropped). Errors name the file: ``not_found``
    when it is missing; for bad UTF-8 the line (and, with ``show_byte``, the byte) and ``expected``."""
    raw = read_raw(path, not_found)
    return raw, decode_utf8(path, raw, expected, show_byte)


def read_raw(path: Path, not_found: str) -> bytes:
    """A file's bytes; an error naming the file (``not_found`` when it is missing)."""
    try:
        return read_input(path)
    except FileNotFoundError:
        raise EnsembleError(f"{path}: {not_found}") from None
    except OSError as exc:
        raise EnsembleError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def decode_utf8(path: Path, raw: bytes, expected: str, show_byte: bool = False) -> str:
    """``raw`` (the bytes of ``path``) as UTF-8 text, BOM dropped; bad UTF-8 is an error naming
    the file's line (and, with ``show_byte``, the byte) and ``expected``."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        byte = f" (byte {exc.start})" if show_byte else ""
        raise EnsembleError(f"{path}:{line}: not valid UTF-8 text{byte}; expected {expected}") from None


def _read_header(reader, path: Path, task: str, labelled: bool | None) -> tuple[list[str], tuple, bool]:
    """The header row, the column indices (id, text a, text b or None, label or None) and
    whether the rows are read with labels."""
    t = TASKS[task]
    try:
        header = next(reader)
    except StopIteration:
        raise EnsembleError(f"{path}:1: empty file; expected a tab-separated header naming the columns id, "
                            + ", ".join(_text_columns(task))) from None
    except csv.Error as exc:
        raise EnsembleError(f"{path}:1: unreadable header ({exc})") from None
    names = [h.strip() for h in header]
    wanted = ["id", *_text_columns(task)]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise EnsembleError(
            f"{path}:1: header has no column {', '.join(map(repr, missing))}; expected tab-separated columns "
            f"named {', '.join(repr(c) for c in wanted)}"
            f"{' and ' + repr(t.label_column) if labelled is not False else ''} (found {shown(names)}); "
            f"is this a {task} file?"
        )
    for c in (*wanted, t.label_column):
        if names.count(c) > 1:
            raise EnsembleError(f"{path}:1: header names column {c!r} {names.count(c)} times; expected it once")
    has_label = t.label_column in names
    if labelled is None:
        labelled = has_label
    elif labelled and not has_label:
        raise EnsembleError(
            f"{path}:1: header has no label column {t.label_column!r} (found {shown(names)}); "
            f"expected a labelled {task} file"
        )
    columns = (names.index("id"), names.index(wanted[1]), names.index(wanted[2]) if t.pair else None,
               names.index(t.label_column) if labelled else None)
    return header, columns, labelled


def _read_rows(reader, path: Path, task: str, header: list[str], columns: tuple) -> tuple[list[Example], list[tuple[int, str]]]:
    """The examples, and the (line, id) of Quora rows skipped for an empty label.

    The hot loop of reading (the Quora train file has hundreds of thousands of rows): no call per
    row but the label parser's, so it stays in one piece."""
    t = TASKS[task]
    i_id, i_a, i_b, i_y = columns
    ncol = len(header)
    pre = preprocess_pair if t.pair else preprocess_single
    skip_empty = task == "para"
    examples: list[Example] = []
    skipped: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    append = examples.append
    prev_end = reader.line_num
    try:
        for row in reader:
            line = prev_end + 1
            prev_end = reader.line_num
            if len(row) != ncol:
                _wrong_width(path, line, row, header)
            sid = row[i_id].lower().strip()
            if i_y is not None:
                ytext = row[i_y]
                if not ytext.strip():
                    if skip_empty:
                        skipped.append((line, sid))
                        continue
                    raise EnsembleError(
                        f"{path}:{line}: label {t.label_column!r} is empty; expected "
                        + ("a number from 0 to 5" if t.kind == "regression" else "an integer class 0..4")
                    )
                y = _parse_label(ytext, task, f"{path}:{line}")
            else:
                y = None
            if not sid:
                raise EnsembleError(f"{path}:{line}: field 'id' is empty; expected a unique example id")
            if sid in seen:
                raise EnsembleError(f"{path}:{line}: id {shown(sid)} repeats line {seen[sid]}; expected each id once")
            seen[sid] = line
            append(Example(sid, pre(row[i_a]), pre(row[i_b]) if i_b is not None else None, y))
    except csv.Error as exc:
        raise EnsembleError(f"{path}:{reader.line_num}: malformed quoting ({exc}); expected tab-separated fields") from None
    return examples, skipped


def _wrong_width(path: Path, line: int, row: list[str], header: list[str]) -> None:
    ncol = len(header)
    if not row:
        raise EnsembleError(f"{path}:{line}: empty line; expected {ncol} tab-separated fields as in the header")
    raise EnsembleError(
        f"{path}:{line}: {len(row)} tab-separated fields; expected {ncol} as in the header ({shown('|'.join(header))})"
    )


def _text_columns(task: str) -> list[str]:
    return ["sentence1", "sentence2"] if TASKS[task].pair else ["sentence"]


# -- the data folder -------------------------------------------------------------------------
PACKAGE_SAMPLE = Path(__file__).resolve().parent / "sample_data"


def resolve_data(data: Path | None) -> tuple[Path, bool]:
    """``--data`` or, without it, ./data when present, else the sample shipped in the package.
    Returns (folder, is_sample). Commands on a registry resolve ``--data`` through
    :func:`ensemble.registry.home.data_for` (the registry's recorded folder first), which ends here."""
    if data is not None:
        d = Path(data)
        if not d.is_dir():
            raise EnsembleError(f"--data {d}: no such folder; expected the course's data folder (ids-sst-dev.csv, ...)")
        return d, d.resolve() == PACKAGE_SAMPLE.resolve()
    if Path("data").is_dir() and any(Path("data").glob("*-dev.csv")):
        return Path("data"), False
    return PACKAGE_SAMPLE, True


def load_splits(data_dir: Path, tasks, splits) -> dict[tuple[str, str], Any]:
    """Read the course files of every (task, split), each checked by :func:`read_split`. A missing
    one, the test file too (the leaderboard needs its predictions), is an error naming it: found
    here, before any training or inference, never after."""
    return {(t, s): read_split(data_dir, t, s) for t in tasks for s in splits}


def check_plain_ids(split: Split) -> None:
    """Refuse a split whose ids cannot go into a prediction or leaderboard file (empty, holding a
    comma, quote or whitespace, or repeated): found when the files are loaded, before any training
    or inference, never after an epoch. The error names the file and the id."""
    from .tasks import is_plain_id

    seen: set[str] = set()
    for n, ex in enumerate(split.examples, 1):
        if not is_plain_id(ex.id):
            raise EnsembleError(f"{split.path}: row {n}: id {shown(ex.id)} is empty or holds a comma, quote or "
                                "whitespace; expected a plain id (it could not be written to a prediction file)")
        if ex.id in seen:
            raise EnsembleError(f"{split.path}: row {n}: id {shown(ex.id)} appears twice; expected each id once")
        seen.add(ex.id)


def split_hashes(splits: dict[tuple[str, str], Any]) -> dict[str, str]:
    """{file name: sha256} of the loaded course files (recorded with a training run, and its fingerprint)."""
    return {sp.path.name: sp.sha256 for sp in splits.values()}
