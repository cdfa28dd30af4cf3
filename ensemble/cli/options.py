"""The options that several commands share, each declared once as an ``Annotated`` alias, and the
fixed sets of values that options take (shown in help as ``[a|b|c]``, checked by click).

A command gives the default in its signature (``registry: RegistryOpt = Path("checkpoints")``).
The value sets of the torch rooms are repeated here so that ``--help`` and ``select`` never load
torch; tests/cli/test_app.py checks that they match the core's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

from enum import Enum

import typer

from ..selection import MODES
from ..tasks import TASK_NAMES

ALL_TASKS = ",".join(TASK_NAMES)
ARCHITECTURES = ("multi", "cerberus", "triple", "static", "multi+triple")   # ensemble.modeling.model.ARCHITECTURES
TRAIN_PRECISIONS = ("auto", "fp32", "bf16", "fp16")                        # ensemble.training.finetune's check
SCHEDULES = ("constant", "linear", "cosine", "slanted")                     # ensemble.training.config.SCHEDULES
INFER_PRECISIONS = ("fp32", "bf16", "fp16")                                # ensemble.modeling.infer.PRECISIONS
PRESETS = ("quick", "paper")                                               # ensemble.runner.PRESETS
SELECT_MODES = tuple(MODES)


def choice(name: str, values) -> type[Enum]:
    """A fixed set of values as a str Enum, for an option's annotation: help lists them as ``<a|b|c>``
    and a value outside them is click's usage error (exit 2). Give the option ``callback=plain`` so
    that the command receives the value itself (a str)."""
    return Enum(name, {v: v for v in values}, type=str)


def plain(member: Enum) -> str:
    """An option callback: the chosen Enum member's value."""
    return member.value


Architecture = choice("Architecture", ARCHITECTURES)
TrainPrecision = choice("TrainPrecision", TRAIN_PRECISIONS)
Schedule = choice("Schedule", SCHEDULES)
InferPrecision = choice("InferPrecision", INFER_PRECISIONS)
Preset = choice("Preset", PRESETS)
SelectMode = choice("SelectMode", SELECT_MODES)
BenchMode = choice("BenchMode", ("greedy", "caruana", "both"))   # the modes bench select has references for
System = choice("System", ("auto", "ensemble"))


REGISTRY_HELP = "Registry folder."
DATA_HELP = "Course data folder (default: ./data if present, else the packaged sample)."
JSON_HELP = "Print JSON instead of tables."
DEVICE_HELP = "auto (CUDA when present), cpu, cuda, cuda:1 ..."
TASKS_HELP = "Comma-separated subset of sst,para,sts."
BASE_HELP = "Encoder: hub name, local folder, or 'minilm' (offline stand-in)."

RegistryOpt = Annotated[Path, typer.Option("--registry", help=REGISTRY_HELP)]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help=DATA_HELP)]
JsonOpt = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
DeviceOpt = Annotated[str, typer.Option("--device", help=DEVICE_HELP)]
CompileOpt = Annotated[bool, typer.Option("--compile", help="Run the models through torch.compile (pays only on large "
                                                            "inputs; see `ensemble bench inference --compile`).")]
PrecisionOpt = Annotated[InferPrecision, typer.Option(
    "--precision", callback=plain, help="Inference precision: fp32, bf16 (CUDA, or CPUs with bf16), fp16 (CUDA).")]
CaruanaStepsOpt = Annotated[int, typer.Option("--steps", help="caruana: selection steps.")]
TasksOpt = Annotated[str, typer.Option("--tasks", help=TASKS_HELP)]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
BaseOpt = Annotated[str, typer.Option("--base", help=BASE_HELP)]
