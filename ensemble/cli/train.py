"""Commands that train: ``train`` and ``pretrain`` (``run``, a whole grid: :mod:`.run`)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from ..data import resolve_data
from ..registry.store import Registry
from ..training.config import DATA, PretrainConfig, TrainConfig
from .options import (DATA_ENV, DATA_HELP, DEVICE_HELP, JSON_HELP, REGISTRY_ENV, REGISTRY_HELP, check_device,
                      config_options, examples, registry_data)
from .progress import RichProgress
from .render import console, print_epochs, print_json, sample_banner

OUTPUT = "Output and run"


@examples("ensemble train --base minilm --data ../data --epochs 2 --limit 1500 --lr 5e-5",
          "ensemble train --architecture cerberus --task-layers 3 --smart-weight 10 --data ../data",
          "ensemble train --base minilm --data ../data --resume")
@config_options(TrainConfig)
def train(
    cfg: TrainConfig,
    data: Annotated[Optional[Path], typer.Option("--data", help=DATA_HELP, envvar=DATA_ENV, rich_help_panel=DATA)] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, callback=check_device, rich_help_panel=OUTPUT)] = "auto",
    registry: Annotated[Path, typer.Option("--registry", help=REGISTRY_HELP, envvar=REGISTRY_ENV,
                                           rich_help_panel=OUTPUT)] = Path("checkpoints"),
    resume: Annotated[bool, typer.Option("--resume", rich_help_panel=OUTPUT, help="Continue this configuration's "
                                         "unfinished run from its last completed epoch (a rerun does this anyway).")] = False,
    again: Annotated[bool, typer.Option("--again", rich_help_panel=OUTPUT, help="Train a new run even when this "
                                        "configuration is already complete or unfinished in the registry.")] = False,
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


@config_options(PretrainConfig)
def pretrain(
    cfg: PretrainConfig,
    out: Annotated[Path, typer.Option(help="Output encoder folder (use it as `ensemble train --base OUT`).",
                                      rich_help_panel=OUTPUT)],
    data: Annotated[Optional[Path], typer.Option("--data", help=DATA_HELP, envvar=DATA_ENV, rich_help_panel=DATA)] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint in OUT.", rich_help_panel=OUTPUT)] = False,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, callback=check_device, rich_help_panel=OUTPUT)] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP, rich_help_panel=OUTPUT)] = False,
) -> None:
    """Further masked-language-model pretraining on the tasks' own text."""
    from ..training.pretrain import pretrain as run_pretrain  # lazy: torch

    data_dir, sample = resolve_data(data)
    sample_banner(sample)
    result = run_pretrain(cfg, data_dir, out, resume=resume, device=device, progress=RichProgress(as_json))
    if as_json:
        print_json(result.to_dict(), default=str)
        return
    print_pretrained(result.to_dict())


# -- what it prints ------------------------------------------------------------
def print_pretrained(d: dict[str, Any]) -> None:
    """``pretrain``'s end: a few lines, the whole record under --json."""
    resumed = f", resumed from step {d['resumed_from']:,}" if d.get("resumed_from") else ""
    console.print(f"pretrained {escape(str(d['base']))} -> {escape(str(d['out']))}: {d['steps']:,} steps "
                  f"({d['steps_run']:,} now{resumed}), {d['epochs']:.2f} passes over {d['sequences']:,} sequences "
                  f"of {','.join(d['tasks'])}, {d['seconds']:.0f} s on {escape(str(d['device']))}", highlight=False, soft_wrap=True)
    loss = "-" if d.get("final_loss") is None else f"{d['final_loss']:.4f}"
    before, after = d.get("perplexity_before"), d.get("perplexity_after")
    perplexity = ("" if before is None or after is None else
                  f"; perplexity {before:.2f} -> {after:.2f} on {escape(str(d.get('perplexity_texts') or '-'))}")
    console.print(f"final loss (mean of the last 50 steps) {loss}{perplexity}", highlight=False, soft_wrap=True)
    console.print(f"train on it: `ensemble train --base {escape(str(d['out']))}` (the whole record: --json)",
                  highlight=False, soft_wrap=True)
