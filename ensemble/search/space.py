"""Search-space files: what ``ensemble search`` samples, as TOML in the grid file's style (no torch,
no optuna: the sampler is handed in).

::

    [defaults]          fixed `train` options (TrainConfig fields), e.g. base = "minilm", epochs = 4
    [space]             one entry per searched option, as a distribution:
                        lr = { log_uniform = [5e-6, 1e-4] }
                        head_dropout = { uniform = [0.0, 0.5] }
                        task_layers = { int = [1, 4] }
                        smart_weight = { choice = [0, 5, 10, 15] }

Keys are TrainConfig's fields (``smart_weight`` or ``smart-weight``), read and type-checked by the
grid file's own code (:mod:`ensemble.scale.grid`); every bound and every choice is checked by
TrainConfig itself when the file is read, so a search never starts a trial that its configuration
would refuse. Options that apply to some values of another only (:data:`CONDITIONS`: task layers
only for ``cerberus``) are sampled only there: a ``multi`` trial has no ``task_layers`` parameter.
Every error names the file, the key and what was expected. The ``paper`` space ships in
``ensemble/search/spaces/``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import EnsembleError
from ..scale.grid import _coerce, _config, _hints, _keys, _table, tomllib
from ..training.config import TrainConfig

SPACES_DIR = Path(__file__).resolve().parent / "spaces"
SPACE_PRESETS = ("paper", "quick")
KINDS = ("log_uniform", "uniform", "int", "choice")
SECTIONS = ("defaults", "space")
# option -> (the option it depends on, the values of that option where it applies)
CONDITIONS: dict[str, tuple[str, tuple[Any, ...]]] = {"task_layers": ("architecture", ("cerberus",))}
EXPECTED = ("expected one of { log_uniform = [low, high] }, { uniform = [low, high] }, { int = [low, high] }, "
            "{ choice = [value, ...] }")


class Suggests(Protocol):
    """What a space samples from: an ``optuna.trial.Trial`` (duck-typed here)."""
    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...
    def suggest_int(self, name: str, low: int, high: int) -> int: ...
    def suggest_categorical(self, name: str, choices: list) -> Any: ...


@dataclass(frozen=True)
class Dist:
    """One searched option: its kind and its bounds (low, high) or its choices."""
    key: str
    kind: str
    values: tuple

    def suggest(self, trial: Suggests) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.values))
        if self.kind == "int":
            return trial.suggest_int(self.key, *self.values)
        return trial.suggest_float(self.key, *self.values, log=self.kind == "log_uniform")

    def to_dict(self) -> dict[str, Any]:
        return {self.kind: list(self.values)}


@dataclass
class Space:
    """A parsed search-space file: its fixed options and its distributions, in file order."""
    path: Path
    defaults: dict[str, Any]
    dists: dict[str, Dist]

    @property
    def name(self) -> str:
        return self.path.stem

    def applies(self, key: str, chosen: dict[str, Any]) -> bool:
        """Whether ``key`` is searched given the options ``chosen`` so far (see :data:`CONDITIONS`)."""
        if key not in CONDITIONS:
            return True
        on, values = CONDITIONS[key]
        return chosen.get(on, self.defaults.get(on, getattr(TrainConfig, on, None))) in values

    def sample(self, trial: Suggests) -> TrainConfig:
        """One configuration: the defaults with every applicable option drawn from ``trial``."""
        return self.config(self.params(trial))

    def params(self, trial: Suggests) -> dict[str, Any]:
        chosen: dict[str, Any] = {}
        for key in _ordered(self.dists):
            if self.applies(key, chosen):
                chosen[key] = self.dists[key].suggest(trial)
        return chosen

    def config(self, params: dict[str, Any]) -> TrainConfig:
        """The configuration of a trial's parameters (``params`` as the study stores them)."""
        fields = {**self.defaults, **params}
        if fields.get("architecture") == "cerberus" and "task_layers" not in fields:
            raise EnsembleError(f"{self.path}: architecture cerberus needs task_layers: expected it in [defaults] "
                                "or [space]")
        return _config(self.path, "trial", fields)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "defaults": {k: list(v) if isinstance(v, tuple) else v
                                                     for k, v in self.defaults.items()},
                "space": {k: d.to_dict() for k, d in self.dists.items()}}


def _ordered(dists: dict[str, Dist]) -> list[str]:
    """The searched keys with each condition's option before the options that depend on it."""
    first = [k for k in dists if k not in CONDITIONS]
    return first + [k for k in dists if k in CONDITIONS]


def space_path(name_or_path: str | Path) -> Path:
    """A shipped space by name (``paper``), else the path given."""
    if str(name_or_path) in SPACE_PRESETS:
        return SPACES_DIR / f"{name_or_path}.toml"
    return Path(name_or_path)


def load_space(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Space:
    """Parse and check a search-space file (or a shipped space by name); ``overrides`` replace
    [defaults] keys (``--base``, ``--epochs`` of the command)."""
    path = space_path(name_or_path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise EnsembleError(f"{path}: cannot read the search space ({e.strerror or e}); expected a TOML file or "
                            f"one of {', '.join(SPACE_PRESETS)}") from None
    except UnicodeDecodeError:
        raise EnsembleError(f"{path}: not UTF-8 text; expected a TOML search-space file") from None
    except tomllib.TOMLDecodeError as e:
        raise EnsembleError(f"{path}: not valid TOML ({e})") from None
    unknown = [k for k in doc if k not in SECTIONS]
    if unknown:
        raise EnsembleError(f"{path}: unknown table or key {unknown[0]!r}; expected [defaults] and [space] tables")
    defaults = {**_keys(path, "[defaults]", _table(path, doc, "defaults")), **(overrides or {})}
    raw = _table(path, doc, "space")
    if not raw:
        raise EnsembleError(f"{path}: [space]: expected at least one searched option (a [grid] file trains a "
                            "fixed list: `ensemble run --grid`)")
    dists = {}
    for key, spec in raw.items():
        d = _dist(path, key, spec)
        if d.key in dists:
            raise EnsembleError(f"{path}: [space]: {key!r} is given twice")
        if d.key in defaults:
            raise EnsembleError(f"{path}: [space] {key}: also in [defaults]; expected it in one of them")
        dists[d.key] = d
    space = Space(path, defaults, dists)
    _check_bounds(space)
    return space


def _dist(path: Path, raw: str, spec: Any) -> Dist:
    """One [space] entry, its values of the option's type (checked by the grid file's code)."""
    where = f"[space] {raw}"
    key = raw.replace("-", "_")
    hints = _hints()
    if key not in hints:
        raise EnsembleError(f"{path}: {where}: unknown key {raw!r}; expected a `train` option: {', '.join(hints)}")
    if key in ("tasks", "base", "epochs"):
        raise EnsembleError(f"{path}: {where}: {key} cannot be searched (every trial is scored on the same tasks "
                            "over the same epochs); expected it in [defaults]")
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
        raise EnsembleError(f"{path}: {where} = {spec!r}: {EXPECTED}")
    kind, values = next(iter(spec.items()))
    if not isinstance(values, list) or not values:
        raise EnsembleError(f"{path}: {where}: {kind} = {values!r}: expected a non-empty list")
    hint = hints[key]
    if kind == "choice":
        vals = tuple(_coerce(path, where, key, v, hint) for v in values)
        if len(set(vals)) != len(vals):
            raise EnsembleError(f"{path}: {where}: choice {values!r}: expected each value once")
        return Dist(key, kind, vals)
    if len(values) != 2:
        raise EnsembleError(f"{path}: {where}: {kind} = {values!r}: expected two bounds [low, high]")
    number = int if kind == "int" else float
    if hint not in (number, float) or hint is float and kind == "int":
        raise EnsembleError(f"{path}: {where}: {kind}: {key} is not {'an integer' if kind == 'int' else 'a number'} "
                            "option; expected { choice = [...] }")
    low, high = (_coerce(path, where, key, v, number) for v in values)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise EnsembleError(f"{path}: {where}: {kind} = {values!r}: expected finite bounds with low < high")
    if kind == "log_uniform" and low <= 0:
        raise EnsembleError(f"{path}: {where}: log_uniform = {values!r}: expected bounds > 0")
    return Dist(key, kind, (low, high))


def _check_bounds(space: Space) -> None:
    """Every bound and choice of every option, each with the defaults, through TrainConfig's own checks."""
    for key, d in space.dists.items():
        values = d.values if d.kind == "choice" else d.values
        for v in values:
            fields = {**space.defaults, key: v}
            if key in CONDITIONS:
                on, ok = CONDITIONS[key]
                fields[on] = ok[0]
            elif "task_layers" not in fields and fields.get("architecture") == "cerberus":
                fields["task_layers"] = 1
            try:
                TrainConfig(**fields)
            except EnsembleError as e:
                raise EnsembleError(f"{space.path}: [space] {key}: {d.kind} value {v!r}: {e}") from None
