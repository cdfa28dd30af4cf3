"""Grid files: what ``ensemble run`` trains, as TOML.

A grid file has three parts, each optional::

    [defaults]          any `train` option (TrainConfig field), e.g. base = "bert-base-uncased"
    [grid]              lists whose cartesian product is taken, e.g. seed = [0, 1, 2]
    [[runs]]            explicit tables, each one configuration (over the defaults)

Every ``[[runs]]`` table is trained once per combination of the ``[grid]`` lists (the first list
outermost, the runs innermost); with no ``[[runs]]``, each combination is one run. A key of a run
overrides the defaults; a key may not be in both ``[grid]`` and a run. Keys are TrainConfig's
fields (``smart_weight`` or ``smart-weight``), read from the dataclass, so a new training option
works in grid files with no change here. Values are checked for their type here and for their
range by TrainConfig itself; every error names the file, the table and the key. The ``quick`` and
``paper`` presets are grid files shipped in the package (``ensemble/scale/grids/``). A grid making
more than :data:`MAX_CONFIGS` configurations is refused, with its count, before it is expanded.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..documents import MAX_DEPTH, value_depth
from ..errors import EnsembleError, shown
from ..files import read_input
from ..tasks import parse_tasks
from ..training.config import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

GRIDS_DIR = Path(__file__).resolve().parent / "grids"
PRESETS = ("quick", "paper")
SECTIONS = ("defaults", "grid", "runs")
MAX_CONFIGS = 10_000   # the most configurations one grid file may make (each one is a training run)


@dataclass
class Grid:
    """A parsed grid file: where it came from and the configurations it produces, in order."""
    path: Path
    configs: list[TrainConfig]

    @property
    def name(self) -> str:
        return self.path.stem


def preset_path(name: str) -> Path:
    if name not in PRESETS:
        raise EnsembleError(f"--preset {name}: expected one of {', '.join(PRESETS)}")
    return GRIDS_DIR / f"{name}.toml"


def load_preset(name: str, base: str | None = None) -> Grid:
    """A shipped preset's grid (``base``, when given, replaces the file's); its run names are the
    ones registries already hold (not named by the values it varies)."""
    return load_grid(preset_path(name), base, by_values=False)


def load_grid(path: Path | str, base: str | None = None, by_values: bool = True) -> Grid:
    """Parse, check and expand a grid file; ``base``, when given, replaces every run's base;
    ``by_values``: the runs are named by the values the grid varies (:func:`named`)."""
    path = Path(path)
    try:
        doc = tomllib.loads(read_input(path).decode("utf-8"))
    except OSError as e:
        raise EnsembleError(f"--grid {path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise EnsembleError(f"{path}: not UTF-8 text; expected a TOML grid file") from None
    except tomllib.TOMLDecodeError as e:
        raise EnsembleError(f"{path}: not valid TOML ({e})") from None
    except RecursionError:
        raise EnsembleError(f"{path}: nested deeper than {MAX_DEPTH} levels; expected a TOML grid file") from None
    if value_depth(doc) > MAX_DEPTH:
        raise EnsembleError(f"{path}: nested deeper than {MAX_DEPTH} levels; expected a TOML grid file")
    unknown = [k for k in doc if k not in SECTIONS]
    if unknown:
        raise EnsembleError(f"{path}: unknown table or key {unknown[0]!r}; expected [defaults], [grid] and "
                            "[[runs]] tables")
    defaults = _table(path, doc, "defaults")
    grid = _table(path, doc, "grid")
    runs = doc.get("runs", [{}])
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs) or not runs:
        raise EnsembleError(f"{path}: runs: expected [[runs]] tables (one per configuration)")
    defaults = _keys(path, "[defaults]", defaults)
    axes = _axes(path, grid)
    runs = [_keys(path, f"[[runs]] #{i}", r) for i, r in enumerate(runs, 1)]
    for i, r in enumerate(runs, 1):
        both = sorted(set(r) & set(axes))
        if both:
            raise EnsembleError(f"{path}: [[runs]] #{i}: {both[0]} is also a [grid] list; expected it in one of them")
    count = len(runs)
    for values in axes.values():
        count *= len(values)
    if count > MAX_CONFIGS:   # counted from the lists' lengths, before anything is expanded
        sizes = " x ".join([*(f"{len(v)} {k}" for k, v in axes.items()), f"{len(runs)} [[runs]]"])
        raise EnsembleError(f"{path}: {sizes} makes {count:,} configurations; expected at most {MAX_CONFIGS:,} "
                            "(split the grid into several files)")
    configs, seen = [], {}
    for combo in itertools.product(*axes.values()):
        for i, r in enumerate(runs, 1):
            where = f"[[runs]] #{i}" + (f" with {_show(dict(zip(axes, combo)))}" if axes else "")
            fields = {**defaults, **dict(zip(axes, combo)), **r, **({"base": base} if base else {})}
            cfg = _config(path, where, fields)
            key = repr(cfg.to_dict())
            if key in seen:
                raise EnsembleError(f"{path}: {where} is the same configuration as {seen[key]}; expected each "
                                    "configuration once")
            seen[key] = where
            configs.append(cfg)
    return Grid(path, named(configs) if by_values else configs)


def varied(configs: list[TrainConfig]) -> list[str]:
    """The options whose values differ among ``configs``, in TrainConfig's order."""
    dicts = [c.to_dict() for c in configs]
    return [k for k in dicts[0] if k != "varies" and any(d[k] != dicts[0][k] for d in dicts[1:])] if dicts else []


def named(configs: list[TrainConfig]) -> list[TrainConfig]:
    """The configurations, each told which options the grid varies, so that its run name (and its
    candidates' names) show their values: ``multi-sst+para+sts-lr2e-05-ld0.9-s0``."""
    keys = tuple(varied(configs))
    return [dataclasses.replace(c, varies=keys) for c in configs]


def _table(path: Path, doc: dict, name: str) -> dict:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise EnsembleError(f"{path}: {name}: expected a [{name}] table")
    return value


def _show(d: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {v!r}" for k, v in d.items())


def _hints() -> dict[str, Any]:
    """TrainConfig's fields and their types (read from the dataclass: new fields come for free)."""
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig) if f.init and f.name != "varies"}


def _keys(path: Path, where: str, table: dict[str, Any]) -> dict[str, Any]:
    """``table`` with its keys spelled as TrainConfig's fields and its values of their types."""
    hints = _hints()
    out = {}
    for raw, value in table.items():
        key = raw.replace("-", "_")
        if key not in hints:
            raise EnsembleError(f"{path}: {where}: unknown key {raw!r}; expected a `train` option: "
                                f"{', '.join(hints)}")
        if key in out:
            raise EnsembleError(f"{path}: {where}: {raw!r} is given twice (as {key!r} too)")
        out[key] = _coerce(path, where, key, value, hints[key])
    return out


def _axes(path: Path, grid: dict[str, Any]) -> dict[str, list]:
    """The [grid] lists, each value checked like a [defaults] value."""
    axes = {}
    for raw, values in grid.items():
        if not isinstance(values, list) or not values:
            raise EnsembleError(f"{path}: [grid] {raw}: expected a non-empty list of values, got {shown(values)}")
        checked = [_keys(path, "[grid]", {raw: v}) for v in values]
        key = next(iter(checked[0]))
        if key in axes:
            raise EnsembleError(f"{path}: [grid]: {raw!r} is given twice")
        axes[key] = [c[key] for c in checked]
    return axes


def _coerce(path: Path, where: str, key: str, value: Any, hint: Any) -> Any:
    """``value`` as the type ``hint`` of field ``key`` (an int is a float where a float is
    expected; a task list may be a list or a comma-separated string)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        hint = next(a for a in args if a is not type(None))   # TOML has no null: the value is given
    if key == "tasks":
        if isinstance(value, list) and all(isinstance(t, str) for t in value):
            value = ",".join(value)
        if isinstance(value, str):
            try:
                return parse_tasks(value)
            except EnsembleError as e:
                raise EnsembleError(f"{path}: {where}: tasks: {str(e).removeprefix('--tasks: ')}") from None
        raise EnsembleError(f"{path}: {where}: tasks = {shown(value)}: expected a list of task names (sst, para, sts) "
                            "or a comma-separated string")
    ok = {float: (int, float), int: (int,), str: (str,), bool: (bool,)}.get(hint)
    if ok is None:
        return value   # another type: TrainConfig checks it
    if isinstance(value, ok) and (hint is bool or not isinstance(value, bool)):
        if hint is float and not math.isfinite(value):   # refused here, naming the key, before any run
            raise EnsembleError(f"{path}: {where}: {key} = {value!r}: expected a finite number")
        return float(value) if hint is float else value
    expected = {float: "a number", int: "an integer", str: "a string", bool: "true or false"}[hint]
    raise EnsembleError(f"{path}: {where}: {key} = {shown(value)}: expected {expected}")


def _config(path: Path, where: str, fields: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of one run, its checks naming the file and the run."""
    try:
        cfg = TrainConfig(**fields)
    except EnsembleError as e:
        raise EnsembleError(f"{path}: {where}: {e}") from None
    return cfg
