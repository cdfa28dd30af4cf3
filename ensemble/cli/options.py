"""The options that several commands share, each declared once as an ``Annotated`` alias.

A command gives the default in its signature (``registry: RegistryOpt = Path("checkpoints")``); options
without help text are plain defaults (``seed: int = 0``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..tasks import TASK_NAMES

ALL_TASKS = ",".join(TASK_NAMES)

RegistryOpt = Annotated[Path, typer.Option("--registry", help="Registry folder.")]
DataOpt = Annotated[Optional[Path], typer.Option(
    "--data", help="Course data folder (default: ./data if present, else the packaged sample).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")]
CompileOpt = Annotated[bool, typer.Option("--compile", help="Run the models through torch.compile (pays only on large "
                                                            "inputs; see `ensemble bench inference --compile`).")]
PrecisionOpt = Annotated[str, typer.Option(
    "--precision", help="Inference precision: fp32, bf16 (CUDA, or CPUs with bf16), fp16 (CUDA).")]
CaruanaStepsOpt = Annotated[int, typer.Option("--steps", help="caruana: selection steps.")]
