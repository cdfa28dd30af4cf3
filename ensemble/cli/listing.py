"""The columns of ``ensemble list`` and ``compare``: what each shows of a candidate, the filters
(``--where KEY=VALUE``, ``--task``) and the machine output (``--csv``, ``--tsv``: full precision)."""
from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
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
    "created": Field("created", lambda c: c.created, drop=11,
                     show=lambda v: (v or "")[:16].replace("T", " "), floor=16),
}
DEFAULT_COLUMNS = ("id", "name", "arch", "tasks", "params", *TASKS, "epoch", "lr", "smart", "seed", "base", "created")


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


def filtered(cands: list[Candidate], where: list[str], task: str | None) -> list[Candidate]:
    """The candidates with every ``KEY=VALUE`` of ``where`` and, with ``task``, dev predictions for it.
    Numbers match by value (``lr=3e-5``), lists when each given item is in them (``tasks=sst,sts``),
    text whole, as a glob (``name=*-e1``) or up to a dash (``arch=cerberus`` matches cerberus-1)."""
    if task is not None and task not in TASKS:
        raise EnsembleError(f"--task {task}: expected one of {', '.join(TASKS)}")
    tests = []
    for w in where:
        key, sep, want = w.partition("=")
        if not sep or key.strip() not in FIELDS:
            raise EnsembleError(f"--where {w}: expected KEY=VALUE with KEY one of {', '.join(FIELDS)}")
        tests.append((FIELDS[key.strip()], want.strip()))
    return [c for c in cands if all(_matches(f.value(c), want) for f, want in tests)
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
