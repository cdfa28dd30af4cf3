"""Commands that train: ``train`` and ``pretrain`` (``run``, a whole grid: :mod:`.run`)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..data import resolve_data
from ..registry.store import Registry
from ..tasks import parse_tasks
from ..training.config import DATA, TrainConfig
from .options import (ALL_TASKS, DATA_ENV, DATA_HELP, DEVICE_HELP, JSON_HELP, REGISTRY_ENV, REGISTRY_HELP, BaseOpt,
                      DataOpt, DeviceOpt, JsonOpt, SeedOpt, TasksOpt, config_options, registry_data)
from .progress import RichProgress
from .render import print_epochs, print_fields, print_json, sample_banner

OUTPUT = "Output and run"


@config_options(TrainConfig)
def train(
    cfg: TrainConfig,
    data: Annotated[Optional[Path], typer.Option("--data", help=DATA_HELP, envvar=DATA_ENV, rich_help_panel=DATA)] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, rich_help_panel=OUTPUT)] = "auto",
    registry: Annotated[Path, typer.Option("--registry", help=REGISTRY_HELP, envvar=REGISTRY_ENV,
                                           rich_help_panel=OUTPUT)] = Path("checkpoints"),
    resume: Annotated[bool, typer.Option("--resume", rich_help_panel=OUTPUT, help="Continue this configuration's "
                                         "unfinished run from its last completed epoch.")] = False,
    again: Annotated[bool, typer.Option("--again", rich_help_panel=OUTPUT, help="Train even when this "
                                        "configuration is already complete in the registry.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP, rich_help_panel=OUTPUT)] = False,
) -> None:
    """Fine-tune a multitask model; register every epoch that is best on dev for some task.

    Each epoch prints one line and goes into the run's record (`ensemble show CANDIDATE`); a
    configuration already complete in the registry is skipped (--again trains it anyway)."""
    from ..registry.keeper import train_into  # lazy: torch

    data_dir, sample = registry_data(registry, data)
    sample_banner(sample)
    t0 = time.perf_counter()
    result = train_into(Registry(registry), cfg, data_dir, device=device, progress=RichProgress(as_json),
                        resume=resume, again=again)
    elapsed = time.perf_counter() - t0
    if as_json:
        print_json({**result.to_dict(), "seconds": elapsed})
        return
    if result.status == "skipped":   # said on stderr by train_into, naming the candidates
        return
    print_epochs(result, elapsed)


def pretrain(
    data: DataOpt = None,
    base: BaseOpt = "bert-base-uncased",
    tasks: TasksOpt = ALL_TASKS,
    steps: int = typer.Option(1000, help="Optimiser steps of masked-language-model training."),
    out: Path = typer.Option(..., help="Output encoder folder (use it as `ensemble train --base OUT`)."),
    lr: float = typer.Option(1e-5, help="Base learning rate (top encoder layer)."),
    layer_decay: float = typer.Option(1.0, help="Learning-rate factor per layer below the top."),
    batch_size: int = typer.Option(32, help="Texts per batch."),
    seed: SeedOpt = 0,
    checkpoint_every: int = typer.Option(500, help="Save a resumable checkpoint every K steps."),
    include_eval_inputs: bool = typer.Option(False, help="Also use the (unlabelled) dev and test inputs' text."),
    resume: bool = typer.Option(False, help="Continue from the last checkpoint in OUT."),
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Further masked-language-model pretraining on the tasks' own text."""
    from ..training.pretrain import PretrainConfig, pretrain as run_pretrain  # lazy: keeps select/list/validate fast

    data_dir, sample = resolve_data(data)
    sample_banner(sample)
    cfg = PretrainConfig(base=base, tasks=parse_tasks(tasks), steps=steps, lr=lr, layer_decay=layer_decay,
                         batch_size=batch_size, seed=seed, checkpoint_every=checkpoint_every,
                         include_eval_inputs=include_eval_inputs)
    result = run_pretrain(cfg, data_dir, out, resume=resume, device=device, progress=RichProgress(as_json))
    d = result.to_dict() if hasattr(result, "to_dict") else dict(result.__dict__)
    if as_json:
        print_json(d, default=str)
        return
    print_fields(f"MLM pretraining -> {out}", d)

