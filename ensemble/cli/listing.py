"""The columns of ``ensemble list`` and ``compare``: what each shows of a candidate, the filters
(``--where KEY=VALUE``, ``--task``) and the machine output (``--csv``, ``--tsv``: full precision)."""
from __future__ import annotations

import csv
import operator
import re
import sys
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from fnmatch import fnmatchcase
from typing import Any, Callable

from ..registry.candidate import Candidate
from ..errors import EnsembleError
from ..tasks import TASKS


def _config(key: str) -> Callable[[Candidate], Any]:
    return lambda c: c.training_config.get(key)


def _base(c: Candidate) -> str | None:
    base = c.base
    prov = c.base_provenance
    if base and prov:
        base += f" (+MLM {prov.get('steps', '?')} steps)"
    return base


def _dev(task: str) -> Callable[[Candidate], Any]:
    return lambda c: c.dev_metric(task)


def params(n: Any) -> str:
    """A parameter count as the tables show it: 110.0M, 44,679, or - when unknown."""
    if not n:
        return "-"
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n:,}"


@dataclass(frozen=True)
class Field:
    """One column: its header, whether it is a number, when it drops on a narrow terminal (see
    :class:`ensemble.cli.tables.Col`), how it reads a candidate and how the table shows the value."""
    header: str
    value: Callable[[Candidate], Any]
    numeric: bool = False
    drop: int = 0
    show: Callable[[Any], str] = lambda v: "" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))
    floor: int = 10


def size_on_disk(c: Candidate) -> int:
    """The bytes of a candidate's stored files (weights, predictions), as its manifest lists them."""
    return sum(info.size or 0 for info in c.files.values())


def human_size(n: Any) -> str:
    """Bytes as the tables show them: 812 B, 4.2 MB, 1.3 GB (decimal units)."""
    if n is None:
        return ""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _g(v: Any) -> str:
    return "" if v is None else f"{v:g}"


FIELDS: dict[str, Field] = {
    "id": Field("id", lambda c: c.id),
    "name": Field("name", lambda c: c.name, floor=20),
    "kind": Field("kind", lambda c: c.kind, drop=7),
    "arch": Field("arch", lambda c: c.architecture, drop=7),
    "tasks": Field("tasks", lambda c: c.tasks, drop=8, show=lambda v: ",".join(v or []), floor=12),
    "params": Field("params", lambda c: c.parameters, True, 9, params),
    **{t: Field(f"{t} dev", _dev(t), True) for t in TASKS},
    "epoch": Field("epoch", lambda c: c.epoch, True, 3),
    "lr": Field("lr", _config("lr"), True, 2, _g),
    "smart": Field("SMART weight", _config("smart_weight"), True, 5, _g),
    "layer_decay": Field("layer decay", _config("layer_decay"), True, 6, _g),
    "seed": Field("seed", _config("seed"), True, 4),
    "task_layers": Field("task layers", _config("task_layers"), True, 6),
    "base": Field("base", _base, drop=10, floor=16),
    "size": Field("size", size_on_disk, True, 12, human_size),
    "created": Field("created", lambda c: c.created, drop=11,
                     show=lambda v: (v or "")[:16].replace("T", " "), floor=16),
}
DEFAULT_COLUMNS = ("id", "name", "arch", "tasks", "params", *TASKS, "epoch", "lr", "smart", "seed", "base", "size",
                   "created")


def parse_columns(text: str | None) -> list[str]:
    """``--columns a,b,c`` (or ``all``) as field keys; an unknown key is an error naming the known ones."""
    if text is None:
        return list(DEFAULT_COLUMNS)
    if text.strip() == "all":
        return list(FIELDS)
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in FIELDS]
    if unknown or not keys:
        raise EnsembleError(f"--columns: unknown column {', '.join(unknown) or '(none given)'}; "
                            f"known: {', '.join(FIELDS)} (or all)")
    return keys


def _matches(raw: Any, want: str) -> bool:
    if isinstance(raw, list):
        return set(want.split(",")) <= set(raw)
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        try:
            return float(want) == float(raw)
        except ValueError:
            return False
    text = machine(raw)
    return text == want or fnmatchcase(text, want) or text.startswith(want + "-")


WHERE = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*(>=|<=|!=|>|<|=)\s*(.*?)\s*$")
COMPARE = {">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le}


def _training_options() -> list[str]:
    from ..training.config import TrainConfig   # torch-free: the option names ``train`` takes

    return [f.name for f in dataclass_fields(TrainConfig) if "help" in f.metadata]


def _where_value(key: str) -> Callable[[Candidate], Any] | None:
    """How ``--where`` reads ``key`` of a candidate: a column (sst is its dev score) or any training option."""
    if key in FIELDS:
        return FIELDS[key].value
    if key in _training_options():
        return _config(key)
    return None


def _test(raw: Any, op: str, want: str) -> bool:
    if op == "=":
        return _matches(raw, want)
    if op == "!=":
        return raw is not None and not _matches(raw, want)
    if raw is None or isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return False
    return COMPARE[op](float(raw), float(want))


def filtered(cands: list[Candidate], where: list[str], task: str | None) -> list[Candidate]:
    """The candidates with every ``KEY OP VALUE`` of ``where`` and, with ``task``, dev predictions for it.
    KEY is a column (``sst`` its dev score) or any training option (``batch_size``, ``warmup``,
    ``schedule`` ...); OP is ``=``, ``!=``, ``>``, ``<``, ``>=`` or ``<=`` (the four last on numbers:
    ``sts>0.8``). With ``=`` numbers match by value (``lr=3e-5``), lists when each given item is in
    them (``tasks=sst,sts``), text whole, as a glob (``name=*-e1``) or up to a dash (``arch=cerberus``
    matches cerberus-1)."""
    if task is not None and task not in TASKS:
        raise EnsembleError(f"--task {task}: expected one of {', '.join(TASKS)}")
    tests = []
    for w in where:
        m = WHERE.match(w)
        value = _where_value(m.group(1).replace("-", "_")) if m else None
        if m is None or value is None:
            raise EnsembleError(f"--where {w}: expected KEY=VALUE or a comparison (KEY>VALUE, <, >=, <=, !=) with "
                                f"KEY a column ({', '.join(FIELDS)}) or a training option ({', '.join(_training_options())})")
        op, want = m.group(2), m.group(3)
        if op in COMPARE:
            try:
                float(want)
            except ValueError:
                raise EnsembleError(f"--where {w}: {op} compares numbers; expected a number after it") from None
        tests.append((value, op, want))
    return [c for c in cands if all(_test(value(c), op, want) for value, op, want in tests)
            and (task is None or c.has_predictions(task, "dev"))]


def machine(v: Any) -> str:
    """A value for ``--csv``/``--tsv``: blank for none, every digit of a float."""
    if v is None:
        return ""
    if isinstance(v, list):
        return ",".join(map(str, v))
    return repr(v) if isinstance(v, float) else str(v)


def write_delimited(cands: list[Candidate], keys: list[str], delimiter: str) -> None:
    w = csv.writer(sys.stdout, delimiter=delimiter, lineterminator="\n")
    w.writerow(keys)
    for c in cands:
        w.writerow([machine(FIELDS[k].value(c)) for k in keys])


def compare_fields(cands: list[Candidate]) -> list[dict[str, Any]]:
    """``compare``'s rows: the list columns, then every training setting any of them has (imported
    candidates have none), each with the raw values, as shown, and whether they differ."""
    keys = [k for k in FIELDS if k not in ("id", "lr", "smart", "layer_decay", "seed", "task_layers")]
    rows = [(FIELDS[k].header, [FIELDS[k].value(c) for c in cands], machine if k == "created" else FIELDS[k].show)
            for k in keys]   # the whole time: the list's minutes may be equal where the times differ
    settings = sorted({k for c in cands for k in c.training_config})
    rows += [(f"config {k}", [_config(k)(c) for c in cands], _setting) for k in settings]
    return [{"field": label, "values": values, "shown": [show(v) for v in values],
             "differs": any(v != values[0] for v in values[1:])} for label, values, show in rows]


def _setting(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return machine(v)
