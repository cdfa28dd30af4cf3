"""The unrounded prediction file: one CSV per task and split, e.g. ``sst-dev.csv``.

Used both for the registry's cached predictions and as the documented import format for
predictions made by other code (the course starter, a notebook, ...). Format::

    id,p0,p1,p2,p3,p4          (sst: class probabilities, each in [0, 1], summing to 1 within 1e-3)
    id,prob                    (para: paraphrase probability in [0, 1])
    id,score                   (sts: raw similarity score, a finite float within +-1e6)

Comma-separated, UTF-8, ``\\n`` line ends (``\\r\\n`` is accepted on reading), one row per id,
values written with ``repr(float)`` so they read back bit-for-bit as float64. Ids may not hold
commas, quotes or whitespace (the course's ids are 25 hex digits).

Pure Python + numpy; a 20k-row file parses in a few tens of milliseconds.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:   # numpy is imported by the functions that use it: the command line starts without it
    import numpy as np

from .data import read_utf8
from .errors import EnsembleError, shown
from .files import atomic_write_bytes
from .tasks import NUMBER, TASKS, get_task, is_plain_id

__all__ = [
    "SUM_TOLERANCE",
    "STS_BOUND",
    "prediction_file_name",
    "header_for",
    "write_predictions",
    "read_predictions",
    "parse_predictions",
    "UTF8_CSV",
    "check_ids",
    "id_listing",
    "align_predictions",
]

SUM_TOLERANCE = 1e-3   # sst probability rows must sum to 1 within this
UTF8_CSV = "a UTF-8 CSV"   # what a prediction file is expected to be, in errors
STS_BOUND = 1e6        # |sts score| above this is refused (1e308 overflows the ensemble's average)
_SHOW = 5              # ids shown in a missing/extra listing
LEADERBOARD_HEADERS = {t.output_header.replace(" ", "") for t in TASKS.values()}   # told apart, in errors


def prediction_file_name(task: str, split: str) -> str:
    """``sst-dev.csv``, ``para-test.csv``, ..."""
    get_task(task)
    return f"{task}-{split}.csv"


def header_for(task: str) -> str:
    """The exact header line (without newline): ``id,p0,...`` / ``id,prob`` / ``id,score``."""
    return ",".join(("id", *get_task(task).prediction_columns))


def _check_values(where: str, task: str, values: np.ndarray, first_line: int) -> None:
    """Range checks shared by writing and reading; ``first_line`` is the line of row 0."""
    import numpy as np   # here: the command line starts without numpy

    t = TASKS[task]
    finite = np.isfinite(values)
    if not finite.all():
        r, c = np.argwhere(~finite)[0]
        raise EnsembleError(
            f"{where}:{first_line + r}: column {t.prediction_columns[c]!r} is {float(values[r, c])!r}; "
            f"expected a finite number"
        )
    if t.kind == "regression":
        big = np.abs(values) > STS_BOUND
        if big.any():
            r, c = np.argwhere(big)[0]
            raise EnsembleError(
                f"{where}:{first_line + r}: column {t.prediction_columns[c]!r} is {float(values[r, c])!r}; "
                f"expected a similarity score within +-{STS_BOUND:g}"
            )
    if t.kind in ("classes", "binary"):
        bad = (values < 0.0) | (values > 1.0)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise EnsembleError(
                f"{where}:{first_line + r}: column {t.prediction_columns[c]!r} is {float(values[r, c])!r}; "
                f"expected a probability in [0, 1]"
            )
    if t.kind == "classes" and len(values):
        sums = values.sum(axis=1)
        bad = np.abs(sums - 1.0) > SUM_TOLERANCE
        if bad.any():
            r = int(np.argmax(bad))
            raise EnsembleError(
                f"{where}:{first_line + r}: probabilities {','.join(t.prediction_columns)} sum to "
                f"{float(sums[r])!r}; expected 1 within {SUM_TOLERANCE:g}"
            )


def write_predictions(path: str | Path, task: str, ids: Sequence[str], values: np.ndarray) -> None:
    """Write unrounded predictions ``values`` (shape ``(n, k)``) for ``ids`` atomically.

    Refuses (EnsembleError) anything :func:`read_predictions` would refuse, so a written file
    always reads back.
    """
    import numpy as np   # here: the command line starts without numpy

    t = get_task(task)
    path = Path(path)
    k = len(t.prediction_columns)
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1 and k == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != k:
        raise EnsembleError(f"{path}: predictions have shape {arr.shape}; expected (n, {k}) for task {task}")
    ids = [str(i) for i in ids]
    if len(ids) != arr.shape[0]:
        raise EnsembleError(f"{path}: {len(ids)} ids for {arr.shape[0]} prediction rows; expected one id per row")
    seen: dict[str, int] = {}
    for n, i in enumerate(ids):
        line = n + 2
        if not is_plain_id(i):
            raise EnsembleError(
                f"{path}:{line}: id {shown(i)} is empty or holds a comma, quote or whitespace; expected a plain id"
            )
        if i in seen:
            raise EnsembleError(f"{path}:{line}: id {shown(i)} repeats line {seen[i]}; expected each id once")
        seen[i] = line
    _check_values(str(path), task, arr, 2)
    parts = [header_for(task), "\n"]
    r = repr
    if k == 1:
        for i, v in zip(ids, arr[:, 0].tolist()):
            parts.append(f"{i},{r(v)}\n")
    else:
        for i, row in zip(ids, arr.tolist()):
            parts.append(i + "," + ",".join(map(r, row)) + "\n")
    atomic_write_bytes(path, "".join(parts).encode("utf-8"))


def read_predictions(path: str | Path, task: str) -> tuple[list[str], np.ndarray]:
    """Read a prediction file: ``(ids, values)`` with ``values`` float64 of shape ``(n, k)``
    (see :func:`parse_predictions`)."""
    path = Path(path)
    _, text = read_utf8(path, f"prediction file not found; expected a CSV with header {header_for(task)!r}",
                        UTF8_CSV)
    return parse_predictions(path, task, text)


def parse_predictions(path: Path, task: str, text: str) -> tuple[list[str], np.ndarray]:
    """``(ids, values)`` of ``text``, the contents of prediction file ``path``.

    Checks the exact header, the column count, that each value is a finite number in the
    task's range (sst rows summing to 1), and that no id is empty or repeated; every error
    names the file and line.
    """
    lines = _lines(path, task, text)
    ids, values = _parse_rows(path, task, lines)
    _check_values(str(path), task, values, 2)
    return ids, values


def _lines(path: Path, task: str, text: str) -> list[str]:
    """The file's lines (the last newline dropped), after checking its header is exactly the task's."""
    header = header_for(task)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise EnsembleError(f"{path}:1: empty file; expected the header {header!r}")
    first = lines[0].rstrip("\r")
    if first.replace(" ", "") in LEADERBOARD_HEADERS:
        raise EnsembleError(
            f"{path}:1: header is {shown(first)}: a leaderboard file (hard labels), not unrounded predictions; "
            f"named {TASKS[task].output_name(path.stem.split('-')[-1])} beside the other leaderboard files (or in the "
            f"submission zip) it registers as a labels candidate, which votes; probabilities keep more: write "
            f"{header!r} files, or call ensemble.log_candidate from the code that made them")
    if first != header:
        raise EnsembleError(f"{path}:1: header is {shown(first)}; expected exactly {header!r} (task {task})")
    return lines


def _parse_rows(path: Path, task: str, lines: list[str]) -> tuple[list[str], np.ndarray]:
    """Ids and values of the rows after the header (the hot loop: one function, no call per row)."""
    import numpy as np   # here: the command line starts without numpy

    columns = TASKS[task].prediction_columns
    header = lines[0].rstrip("\r")
    ncol = len(columns) + 1
    n = len(lines) - 1
    ids: list[str] = []
    rows: list[list[float]] = []
    seen: dict[str, int] = {}
    for ln in range(1, n + 1):
        parts = lines[ln].rstrip("\r").split(",")
        line = ln + 1
        if len(parts) != ncol:
            if parts == [""]:
                raise EnsembleError(f"{path}:{line}: empty line; expected {ncol} comma-separated fields ({header})")
            raise EnsembleError(f"{path}:{line}: {len(parts)} comma-separated fields; expected {ncol} ({header})")
        sid = parts[0].strip()
        if not sid:
            raise EnsembleError(f"{path}:{line}: field 'id' is empty; expected an example id")
        if sid in seen:
            raise EnsembleError(f"{path}:{line}: id {shown(sid)} repeats line {seen[sid]}; expected each id once")
        seen[sid] = line
        ids.append(sid)
        fields = [x.strip() for x in parts[1:]]   # float() keeps what str.strip() removes (\x1c-\x1f)
        if not all(NUMBER.match(x) for x in fields):
            _not_a_number(path, line, fields, columns)
        rows.append([float(x) for x in fields])
    return ids, np.array(rows, dtype=np.float64).reshape(n, len(columns))


def _not_a_number(path: Path, line: int, fields: list[str], columns) -> None:
    """Raise naming the first field of the row that is not a number as the course readers read one
    (``tasks.NUMBER``: no ``1_0``); ``nan`` and ``inf`` pass, for the range check to name them."""
    for c, x in enumerate(fields):
        s = x.strip().lower()
        if NUMBER.match(x.strip()) or (s[1:] if s[:1] in ("+", "-") else s) in ("nan", "inf", "infinity"):
            continue
        raise EnsembleError(f"{path}:{line}: column {columns[c]!r} is {shown(x)}; expected a number "
                            "(digits with an optional sign, decimal point and exponent, e.g. 0.25 or 1e-3)")


def id_listing(items: list[str]) -> str:
    """The first few ``items``, comma-separated, then a count of the rest."""
    first = ", ".join(items[:_SHOW])
    return first + (f", ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else "")


def check_ids(path: str | Path, ids: Iterable[str], expected_ids: Iterable[str]) -> None:
    """Raise EnsembleError naming ``path`` if ``ids`` is not exactly the set ``expected_ids``.

    The message gives the count and the first few of the missing and of the extra ids.
    """
    ids = list(ids)
    expected = list(expected_ids)
    have = set(ids)
    want = set(expected)
    if have == want and len(ids) == len(have):
        return
    msgs = []
    missing = [i for i in expected if i not in have]
    extra = [i for i in ids if i not in want]
    if missing:
        msgs.append(f"{len(missing)} missing id{'s' if len(missing) != 1 else ''}: {id_listing(missing)}")
    if extra:
        msgs.append(f"{len(extra)} extra id{'s' if len(extra) != 1 else ''} not in the input: {id_listing(extra)}")
    if len(ids) != len(have):
        counts: dict[str, int] = {}
        for i in ids:
            counts[i] = counts.get(i, 0) + 1
        dups = [i for i, c in counts.items() if c > 1]
        msgs.append(f"{len(dups)} repeated id{'s' if len(dups) != 1 else ''}: {id_listing(dups)}")
    raise EnsembleError(
        f"{path}: ids do not match the input ({len(expected)} expected, {len(ids)} found): " + "; ".join(msgs)
    )


def align_predictions(
    path: str | Path, ids: Sequence[str], values: np.ndarray, expected_ids: Sequence[str]
) -> np.ndarray:
    """``values`` reordered to ``expected_ids`` (join by id, never by position); checks ids first."""
    import numpy as np   # here: the command line starts without numpy

    check_ids(path, ids, expected_ids)
    pos = {i: n for n, i in enumerate(ids)}
    order = np.fromiter((pos[i] for i in expected_ids), dtype=np.int64, count=len(expected_ids))
    return np.asarray(values)[order]
