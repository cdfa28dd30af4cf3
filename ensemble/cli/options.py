"""The options that several commands share, each declared once as an ``Annotated`` alias; the
fixed sets of values that options take (shown in help as ``[a|b|c]``, checked by click), read
from the torch-free configuration modules; and :func:`config_options`, which turns a configuration
dataclass (:class:`~ensemble.training.config.TrainConfig`) into a command's options, so that each
training option's default, help text and check live in one place.
"""
from __future__ import annotations

import functools
import inspect
import re
import typing
from dataclasses import Field, fields
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from ..errors import EnsembleError
from ..modeling.config import ARCHITECTURES, DEVICES, INFER_PRECISIONS  # noqa: F401  (ARCHITECTURES: the value set, read by tests and docs)
from ..scale.grid import PRESETS
from ..selection.names import SELECT_MODES as MODE_CHOICES
from ..tasks import TASK_NAMES, parse_tasks
from ..training.config import BASE_HELP, TASKS_HELP

ALL_TASKS = ",".join(TASK_NAMES)
USAGE_ERROR = typer.BadParameter.__mro__[1]   # click's UsageError (typer keeps click inside itself): exit 2
SELECT_MODES = MODE_CHOICES   # auto and the fixed modes


def examples(*lines: str) -> Callable[[Callable], Callable]:
    """Attach usage examples to a command; ``ensemble CMD --help`` shows them last (the app reads
    ``function.examples``), one command a line."""
    def attach(command: Callable) -> Callable:
        command.examples = "Examples:\n\n" + "\n".join(f"  $ {line}" for line in lines)
        return command
    return attach


def choice(name: str, values) -> type[Enum]:
    """A fixed set of values as a str Enum, for an option's annotation: help lists them as ``<a|b|c>``
    and a value outside them is click's usage error (exit 2). Give the option ``callback=plain`` so
    that the command receives the value itself (a str)."""
    return Enum(name, {v: v for v in values}, type=str)


def plain(member: Enum) -> str:
    """An option callback: the chosen Enum member's value."""
    return member.value


InferPrecision = choice("InferPrecision", INFER_PRECISIONS)
Preset = choice("Preset", PRESETS)
SelectMode = choice("SelectMode", SELECT_MODES)
BenchMode = choice("BenchMode", ("greedy", "caruana", "both"))   # the modes bench select has references for
System = choice("System", ("auto", "ensemble"))


REGISTRY_HELP = "Registry folder."
DATA_HELP = ("Course data folder (default: the folder the registry's candidates were made from; for a new "
             "registry ./data if present, else the packaged sample).")
REGISTRY_ENV, DATA_ENV = "ENSEMBLE_REGISTRY", "ENSEMBLE_DATA"
JSON_HELP = "Print JSON instead of tables."
DEVICE_HELP = "auto (CUDA when present), cpu, cuda, cuda:1 ..."

RegistryOpt = Annotated[Path, typer.Option("--registry", help=REGISTRY_HELP, envvar=REGISTRY_ENV)]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help=DATA_HELP, envvar=DATA_ENV)]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (for scripts).")]
JsonOpt = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
def check_device(value: str) -> str:
    """``--device``'s callback: a value outside :data:`ensemble.modeling.config.DEVICES` is a usage
    error (exit 2), found before any work; whether the machine has that GPU is checked where it is used."""
    if value is not None and not re.fullmatch(DEVICES, value):
        raise typer.BadParameter(f"{value!r}: expected auto, cpu, cuda or cuda:N (N a GPU index)")
    return value


DeviceOpt = Annotated[str, typer.Option("--device", help=DEVICE_HELP, callback=check_device)]
CompileOpt = Annotated[bool, typer.Option("--compile", help="Run the models through torch.compile (pays only on large "
                                                            "inputs; see `ensemble bench inference --compile`).")]
PrecisionOpt = Annotated[InferPrecision, typer.Option(
    "--precision", callback=plain, help="Inference precision: fp32, bf16 (CUDA, or CPUs with bf16), fp16 (CUDA).")]
CaruanaStepsOpt = Annotated[int, typer.Option("--steps", help="caruana: selection steps.")]
TasksOpt = Annotated[str, typer.Option("--tasks", help=TASKS_HELP)]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
BaseOpt = Annotated[str, typer.Option("--base", help=BASE_HELP)]   # --base of pretrain and bench


# -- TAB completion: read the registry named on the command line (or ./checkpoints), never load models
def _registry(ctx: Any) -> Any:
    from ..registry.store import Registry

    return Registry((ctx.params.get("registry") if ctx is not None else None) or Path("checkpoints"))


def complete_candidates(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Candidate ids that start with what was typed, each with its name."""
    try:
        reg = _registry(ctx)
        cands = reg.candidates() if reg.exists else []
    except Exception:   # completion never fails a shell: no candidates offered
        return []
    return [(c.id, str(c.name)) for c in cands if c.id.startswith(incomplete)]


def complete_runs_and_candidates(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Candidate ids and training-run ids (``show``)."""
    from ..registry.runs import read_runs

    try:
        reg = _registry(ctx)
        runs = read_runs(reg.root) if reg.exists else []
    except Exception:
        runs = []
    return complete_candidates(ctx, incomplete) + [(str(r.get("run_id")), f"run {r.get('name')}") for r in runs
                                                   if str(r.get("run_id")).startswith(incomplete)]


def complete_ensembles(ctx: typer.Context, incomplete: str) -> list[str]:
    """The saved ensembles' names."""
    try:
        reg = _registry(ctx)
        names = reg.ensemble_names() if reg.exists else []
    except Exception:
        return []
    return [n for n in names if n.startswith(incomplete)]


def complete_sort(incomplete: str) -> list[str]:
    """``list --sort``'s keys: the tasks."""
    return [t for t in TASK_NAMES if t.startswith(incomplete)]


def _option_param(f: Field, hint: Any) -> inspect.Parameter:
    """One configuration field as a typer option: default, help, panel, fixed values, short flag."""
    meta = f.metadata
    names = [f"--{f.name.replace('_', '-')}"] + ([meta["short"]] if meta.get("short") else [])
    default, kw = f.default, {}
    if meta.get("choices"):
        hint, kw = choice(f.name.title().replace("_", ""), meta["choices"]), {"callback": plain}
    elif f.name == "tasks":
        hint, default = str, ",".join(default)
    info = typer.Option(*names, help=meta["help"], rich_help_panel=meta["panel"], **kw)
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[hint, info])


def config_options(config: type, into: str = "cfg") -> Callable[[Callable], Callable]:
    """Decorate a command whose parameter ``into`` is a ``config`` instance: the command gets one
    option per field of the dataclass ``config`` (made with :func:`ensemble.training.config.option`)
    and receives them as one checked ``config`` (its check's error is a usage error, exit 2, as for a
    value outside an option's choices)."""
    hints = typing.get_type_hints(config)
    made = [_option_param(f, hints[f.name]) for f in fields(config) if "help" in f.metadata]

    def decorate(command: Callable) -> Callable:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != into]

        @functools.wraps(command)
        def run(**kw: Any) -> Any:
            values = {p.name: kw.pop(p.name) for p in made}
            try:
                if "tasks" in values:
                    values["tasks"] = parse_tasks(values["tasks"])
                checked = config(**values)
            except EnsembleError as e:   # a value the option does not take: the command line's mistake
                raise USAGE_ERROR(str(e)) from None
            return command(**kw, **{into: checked})

        params = made + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        run.__signature__ = inspect.Signature(params)
        run.__annotations__ = {p.name: p.annotation for p in params}
        return run
    return decorate


def registry_data(registry: Path, data: Optional[Path]) -> tuple[Path, bool]:
    """``--data`` of a command on ``registry``: the given folder, else the one the registry records
    (:func:`ensemble.registry.home.data_for`); (folder, is the packaged sample)."""
    from ..registry.home import data_for

    chosen = data_for(registry, data)
    return chosen.folder, chosen.sample
