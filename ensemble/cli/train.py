"""Commands that train: ``train``, ``pretrain`` and ``run`` (train, select, write, validate, zip)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from ..data import resolve_data
from ..registry import Registry
from ..tasks import parse_tasks
from .options import ALL_TASKS, DataOpt, DeviceOpt, JsonOpt, RegistryOpt
from .progress import RichProgress
from .render import err, print_epochs, print_fields, print_json, print_run, sample_banner


def train(
    data: DataOpt = None,
    base: str = typer.Option("bert-base-uncased", help="Encoder: hub name, local folder, or 'minilm' (offline stand-in)."),
    architecture: str = typer.Option("multi", "--architecture", "-a", help="multi, cerberus, triple, static, multi+triple."),
    task_layers: int = typer.Option(0, help="cerberus: top K layers copied per task."),
    tasks: str = typer.Option(ALL_TASKS, help="Comma-separated subset of sst,para,sts."),
    lr: float = typer.Option(1e-5, help="Base learning rate (top encoder layer)."),
    epochs: int = typer.Option(10, help="Epochs; each epoch best for some task becomes a candidate."),
    batch_size: int = 16,
    weight_decay: float = typer.Option(1e-4, help="AdamW weight decay (1e-5 suits SST alone)."),
    layer_decay: float = typer.Option(0.95, help="Learning-rate factor per layer below the top."),
    head_lr_mult: float = typer.Option(1.0, help="Head learning rate = lr x this."),
    embed_lr_mult: float = typer.Option(1.0, help="Extra factor on the embeddings' rate; 0 freezes them."),
    head_dropout: float = 0.0,
    hidden_dropout: float = 0.1,
    smart_weight: float = typer.Option(0.0, help="SMART lambda_s (0 = off; 10-15 in the report's best models)."),
    smart_steps: int = 1, smart_sigma: float = 1e-5, smart_eta: float = 1e-3, smart_epsilon: float = 1e-6,
    seed: int = 0,
    limit: Optional[int] = typer.Option(None, help="Use the first N training examples per task."),
    max_length: Optional[int] = typer.Option(None, help="Truncate inputs to N tokens (default: the model's limit)."),
    precision: str = typer.Option("auto", help="Training autocast: auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16."),
    device: DeviceOpt = "auto",
    registry: RegistryOpt = Path("checkpoints"),
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune a multitask model; register every epoch that is best on dev for some task."""
    from ..register import train_into  # lazy: keeps select/list/validate fast
    from ..train import TrainConfig  # lazy: keeps select/list/validate fast

    data_dir, sample = resolve_data(data)
    sample_banner(sample)
    cfg = TrainConfig(base=base, architecture=architecture, task_layers=task_layers, tasks=parse_tasks(tasks),
                      lr=lr, epochs=epochs, batch_size=batch_size, weight_decay=weight_decay,
                      layer_decay=layer_decay, head_lr_mult=head_lr_mult, embed_lr_mult=embed_lr_mult,
                      head_dropout=head_dropout, hidden_dropout=hidden_dropout, smart_weight=smart_weight,
                      smart_steps=smart_steps, smart_sigma=smart_sigma, smart_eta=smart_eta,
                      smart_epsilon=smart_epsilon, seed=seed, limit=limit, max_length=max_length, precision=precision)
    t0 = time.perf_counter()
    result = train_into(Registry(registry), cfg, data_dir, device=device, progress=RichProgress(as_json))
    elapsed = time.perf_counter() - t0
    if as_json:
        print_json({**result.to_dict(), "seconds": elapsed})
        return
    print_epochs(result, elapsed)


def pretrain(
    data: DataOpt = None,
    base: str = typer.Option("bert-base-uncased", help="Encoder to adapt: hub name, local folder, or 'minilm'."),
    tasks: str = ALL_TASKS,
    steps: int = 1000,
    out: Path = typer.Option(..., help="Output encoder folder (use it as `ensemble train --base OUT`)."),
    lr: float = 1e-5,
    layer_decay: float = 1.0,
    batch_size: int = 32,
    seed: int = 0,
    checkpoint_every: int = typer.Option(500, help="Save a resumable checkpoint every K steps."),
    include_eval_inputs: bool = typer.Option(False, help="Also use the (unlabelled) dev and test inputs' text."),
    resume: bool = typer.Option(False, help="Continue from the last checkpoint in OUT."),
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Further masked-language-model pretraining on the tasks' own text."""
    from ..pretrain import PretrainConfig, pretrain as run_pretrain  # lazy: keeps select/list/validate fast

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


def run(
    data: DataOpt = None,
    base: Optional[str] = typer.Option(None, help="Encoder (default: the preset's: minilm for quick, bert-base-uncased for paper)."),
    preset: str = typer.Option("quick", help="quick (CPU, minutes) or paper (the report's grid, for a GPU)."),
    registry: RegistryOpt = Path("checkpoints"),
    out: Path = Path("predictions"),
    submissions: Path = Path("submissions"),
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Train the preset's candidates (resuming), select per task, write, validate and zip a submission."""
    from .. import runner  # lazy: keeps select/list/validate fast

    progress = RichProgress(as_json)
    result = runner.run(data=data, base=base, preset=preset, registry=registry, out=out, submissions=submissions,
                        device=device, progress=progress,
                        on_trained=None if as_json else print_epochs,
                        on_message=None if as_json else err.print)
    progress.stop()
    if as_json:
        print_json({**result, "selection": result["selection"].to_dict()}, default=str)
        return
    print_run(result, out)
