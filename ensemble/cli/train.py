"""Commands that train: ``train`` and ``pretrain`` (``run``, a whole grid: :mod:`.run`)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from ..data import resolve_data
from ..registry.store import Registry
from ..tasks import parse_tasks
from .options import (ALL_TASKS, BASE_HELP, DATA_HELP, DEVICE_HELP, JSON_HELP, REGISTRY_HELP, TASKS_HELP, Architecture,
                      DataOpt, DeviceOpt, JsonOpt, Schedule, SeedOpt, TasksOpt, TrainPrecision, plain)
from .progress import RichProgress
from .render import print_epochs, print_fields, print_json, sample_banner

MODEL, OPTIM, SMART, DATA, OUTPUT = "Model", "Optimisation", "SMART", "Data", "Output and run"


def _opt(default, help: str, panel: str, *names: str, **kw):
    """An option of ``train`` with its help text and its help panel."""
    return typer.Option(default, *names, help=help, rich_help_panel=panel, **kw)


def train(
    base: str = _opt("bert-base-uncased", BASE_HELP, MODEL),
    architecture: Architecture = _opt("multi", "How the tasks share the encoder.", MODEL, "--architecture", "-a",
                                      callback=plain),
    task_layers: int = _opt(0, "cerberus: top K layers copied per task.", MODEL),
    head_dropout: float = _opt(0.0, "Dropout before each task head.", MODEL),
    hidden_dropout: float = _opt(0.1, "The encoder's hidden-layer dropout.", MODEL),
    max_length: Optional[int] = _opt(None, "Truncate inputs to N tokens (default: the model's limit).", MODEL),
    lr: float = _opt(1e-5, "Base learning rate (top encoder layer).", OPTIM),
    epochs: int = _opt(10, "Epochs; each epoch best for some task becomes a candidate.", OPTIM),
    batch_size: int = _opt(16, "Examples per training batch.", OPTIM),
    weight_decay: float = _opt(1e-4, "AdamW weight decay (1e-5 suits SST alone).", OPTIM),
    layer_decay: float = _opt(0.95, "Learning-rate factor per layer below the top.", OPTIM),
    head_lr_mult: float = _opt(1.0, "Head learning rate = lr x this.", OPTIM),
    embed_lr_mult: float = _opt(1.0, "Extra factor on the embeddings' rate; 0 freezes them.", OPTIM),
    schedule: Schedule = _opt("constant", "Learning-rate schedule over all steps (slanted: slanted triangular, "
                              "Howard and Ruder 2018); layer decay applies on top.", OPTIM, callback=plain),
    warmup: float = _opt(0.0, "Fraction of the steps warming up from 0 (slanted: the fraction rising, cut_frac).",
                         OPTIM),
    grad_accum: int = _opt(1, "Batches per optimizer step (effective batch = batch size x N; the tasks of "
                              "one step may differ).", OPTIM),
    max_grad_norm: float = _opt(0.0, "Clip the global gradient norm to this (0 = off).", OPTIM),
    patience: int = _opt(0, "Stop when the mean dev score has not improved for N epochs (0 = off).", OPTIM),
    precision: TrainPrecision = _opt("auto", "Training autocast: auto (bf16 on CUDA, fp32 on CPU), fp32, bf16 (a "
                                     "CPU needs bf16 instructions), fp16 (CUDA only, with loss scaling).",
                                     OPTIM, callback=plain),
    gradient_checkpointing: bool = _opt(False, "Recompute each layer's activations in the backward pass "
                                               "(less memory, slower).", OPTIM, "--gradient-checkpointing"),
    seed: int = _opt(0, "Seed of initialisation, shuffling and dropout.", OPTIM),
    smart_weight: float = _opt(0.0, "SMART lambda_s (0 = off; 10-15 in the report's best models).", SMART),
    smart_steps: int = _opt(1, "Ascent steps on the perturbation.", SMART),
    smart_sigma: float = _opt(1e-5, "Standard deviation of the initial embedding noise.", SMART),
    smart_eta: float = _opt(1e-3, "Ascent step size.", SMART),
    smart_epsilon: float = _opt(1e-6, "Added to the l-inf norm when the noise is normalised.", SMART),
    data: Optional[Path] = _opt(None, DATA_HELP, DATA, "--data"),
    tasks: str = _opt(ALL_TASKS, TASKS_HELP, DATA),
    limit: Optional[int] = _opt(None, "Use the first N training examples per task.", DATA),
    device: str = _opt("auto", DEVICE_HELP, OUTPUT),
    registry: Path = _opt(Path("checkpoints"), REGISTRY_HELP, OUTPUT, "--registry"),
    resume: bool = _opt(False, "Continue this configuration's unfinished run from its last completed epoch.",
                        OUTPUT, "--resume"),
    again: bool = _opt(False, "Train even when this configuration is already complete in the registry.",
                       OUTPUT, "--again"),
    as_json: bool = _opt(False, JSON_HELP, OUTPUT, "--json"),
) -> None:
    """Fine-tune a multitask model; register every epoch that is best on dev for some task.

    Each epoch prints one line and goes into the run's record (`ensemble show CANDIDATE`); a
    configuration already complete in the registry is skipped (--again trains it anyway)."""
    from ..registry.keeper import train_into  # lazy: keeps select/list/validate fast
    from ..training.finetune import TrainConfig  # lazy: keeps select/list/validate fast

    data_dir, sample = resolve_data(data)
    sample_banner(sample)
    cfg = TrainConfig(base=base, architecture=architecture, task_layers=task_layers, tasks=parse_tasks(tasks),
                      lr=lr, epochs=epochs, batch_size=batch_size, weight_decay=weight_decay,
                      layer_decay=layer_decay, head_lr_mult=head_lr_mult, embed_lr_mult=embed_lr_mult,
                      head_dropout=head_dropout, hidden_dropout=hidden_dropout, smart_weight=smart_weight,
                      smart_steps=smart_steps, smart_sigma=smart_sigma, smart_eta=smart_eta,
                      smart_epsilon=smart_epsilon, seed=seed, limit=limit, max_length=max_length, precision=precision,
                      schedule=schedule, warmup=warmup, grad_accum=grad_accum, max_grad_norm=max_grad_norm,
                      gradient_checkpointing=gradient_checkpointing, patience=patience)
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
    base: str = typer.Option("bert-base-uncased", help="Encoder to adapt: hub name, local folder, or 'minilm'."),
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

