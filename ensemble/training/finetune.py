"""Multitask fine-tuning: every option of the method, each epoch evaluated on dev and handed to the
caller (``on_epoch``); :func:`ensemble.registry.keeper.train_into` turns the best epochs into candidates
and keeps the run's record.

One batch holds one task; the batches of all tasks are shuffled together (no weighting by dataset
size). AdamW with layer-wise learning-rate decay: the top encoder layer gets the base rate, each
layer below it the rate times ``layer_decay``, the embeddings one step below the bottom layer
(times ``embed_lr_mult``; 0 freezes them), the pooler the base rate and the heads the base rate
times ``head_lr_mult``. Weight decay applies to weight matrices, not to biases and LayerNorm.
The schedule (:mod:`ensemble.training.schedule`) multiplies every group's rate per optimizer step.

An optimizer step takes ``grad_accum`` batches in the order they come (each one task: the tasks
of one step may differ), each batch's loss divided by the number of batches in the step (the
last step of an epoch may have fewer); the global gradient norm is clipped to ``max_grad_norm``.
fp16 runs only on CUDA, with a loss scaler. With a checkpoint folder, every completed epoch
leaves a checkpoint (:mod:`ensemble.training.checkpoint`) that ``resume`` continues from.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import checkpoint as ckpt
from .. import documents
from ..modeling.batches import Encoded, encode, max_length_for, training_batches
from ..data import Split, check_plain_ids, load_splits, split_hashes
from ..files import fault_point
from ..modeling.infer import TokenCache, autocast, check_precision, pick_device, predict_encoded
from ..metrics import score
from ..modeling.bases import load_base, resolve_base
from ..modeling.config import PROVENANCE_FILE, ModelConfig
from ..modeling.model import MultitaskModel, save_model, task_loss
from ..progress import NULL, Progress
from .schedule import multiplier
from .config import SmartConfig, TrainConfig
from .smart import smart_loss
from ..tasks import TASKS


def param_groups(model: MultitaskModel, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW parameter groups with layer-wise learning rates (see module docstring)."""
    n = model.n_layers
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for name, p, role, depth in model.parameter_roles():
        if role == "embeddings":
            lr = cfg.lr * cfg.layer_decay ** n * cfg.embed_lr_mult
            if cfg.embed_lr_mult == 0:
                p.requires_grad_(False)
                continue
        elif role == "layer":
            lr = cfg.lr * cfg.layer_decay ** (n - 1 - depth)
        elif role == "pooler":
            lr = cfg.lr
        else:
            lr = cfg.lr * cfg.head_lr_mult
        no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        wd = 0.0 if no_decay else cfg.weight_decay
        g = groups.setdefault((lr, wd), {"params": [], "names": [], "lr": lr, "weight_decay": wd})
        g["params"].append(p)
        g["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def make_optimizer(model: MultitaskModel, cfg: TrainConfig) -> torch.optim.AdamW:
    """PyTorch's AdamW over :func:`param_groups`; the fused kernel (one pass over all parameters,
    about 10x faster than the per-tensor loop on a CPU) wherever this torch build has it."""
    groups = [{k: v for k, v in g.items() if k != "names"} for g in param_groups(model, cfg)]
    try:
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except RuntimeError:  # pragma: no cover - no fused kernel for this device or dtype
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


@dataclass
class EpochResult:
    epoch: int
    train_loss: dict[str, float]
    dev: dict[str, float]
    seconds: float
    tokens: int
    candidate: str | None = None
    best_for: list[str] = field(default_factory=list)
    lr: float = 0.0              # the base rate (top layer) of the epoch's last optimizer step

    def entry(self) -> dict[str, Any]:
        """The epoch as the run's record holds it (:mod:`ensemble.registry.runs`)."""
        return {**asdict(self), "tokens_per_second": self.tokens / self.seconds if self.seconds > 0 else 0.0}


@dataclass
class TrainResult:
    config: TrainConfig
    run_id: str
    parameters: int
    epochs: list[EpochResult]
    skipped_empty: dict[str, int]
    device: str
    candidates: list[str] = field(default_factory=list)   # filled in by the keeper (ensemble.registry.register)
    status: str = "complete"      # "stopped": --patience ended it early; "skipped": already complete
    resumed_from: int = 0         # the last completed epoch a resumed run continued from (0: none)

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "run_id": self.run_id, "parameters": self.parameters,
                "epochs": [e.entry() for e in self.epochs], "candidates": self.candidates,
                "skipped_empty": self.skipped_empty, "device": self.device, "status": self.status,
                "resumed_from": self.resumed_from}


@dataclass
class TrainRun:
    """What a training run is, fixed before its first epoch: what a keeper records with each epoch."""
    config: TrainConfig
    run_id: str
    model_config: ModelConfig
    parameters: int
    fingerprint: str
    data: dict[str, str]                       # course file name -> sha256
    base_provenance: dict[str, Any] | None     # the base's ensemble_pretrain.json, if any
    splits: dict[tuple[str, str], Split]       # the dev and test files (predicted for each kept epoch)
    device: torch.device
    precision: str
    cache: TokenCache                          # dev and test tokenised once for the whole run


@dataclass
class EpochOutput:
    """What one epoch produced: its result (losses, dev scores, the tasks it is best for so far),
    its dev predictions keyed ``(task, "dev") -> (ids, values)``, and the model itself, which
    :meth:`save` writes as a model folder."""
    result: EpochResult
    dev_predictions: dict[tuple[str, str], tuple[list[str], np.ndarray]]
    model: MultitaskModel
    tokenizer: Any

    def save(self, folder: Path) -> None:
        save_model(self.model, self.tokenizer, folder)


def training_step(model: MultitaskModel, batch, smart_cfg: SmartConfig, device: torch.device, precision: str,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, float]:
    """Forward + loss (+ SMART) for one batch; returns (loss tensor to backpropagate, task loss)."""
    task = batch.task
    with autocast(device, precision):
        embedded = model.embed(task, batch.input_ids, batch.token_type_ids)
        outputs = model.forward_embedded(task, embedded, batch.attention_mask)
        loss = task_loss(task, outputs, batch.labels)
        total = loss
        if smart_cfg.weight > 0:
            def fwd(embs):
                return model.forward_embedded(task, embs, batch.attention_mask)
            total = loss + smart_cfg.weight * smart_loss(fwd, embedded, outputs, task, smart_cfg, generator)
    return total, float(loss.detach())


def train(cfg: TrainConfig, data_dir: Path, on_epoch: Callable[[TrainRun, EpochOutput], None], run_id: str,
          device: str | None = None, progress: Progress = NULL, *, checkpoint_dir: Path | None = None,
          resume: bool = False, on_start: Callable[[TrainRun, list[EpochResult]], None] | None = None,
          after_checkpoint: Callable[[TrainRun, EpochResult], None] | None = None) -> TrainResult:
    """Fine-tune for ``cfg.epochs`` epochs (fewer when ``cfg.patience`` stops it), calling
    ``on_epoch(run, output)`` after each one's dev evaluation, then writing the epoch's checkpoint
    into ``checkpoint_dir`` (if given), then ``after_checkpoint(run, result)``. ``resume``
    continues from the checkpoint found there; ``on_start(run, epochs_done)`` is called once the
    run is set up (the keeper that registers candidates is :func:`ensemble.registry.keeper.train_into`)."""
    dev = pick_device(device)
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if dev.type == "cuda" else "fp32")
    check_precision(precision, dev)   # fp16 needs CUDA; bf16 on a CPU needs its instructions
    torch.manual_seed(cfg.seed)
    splits, skipped = _load_data(cfg, Path(data_dir), progress)
    model, tokenizer, provenance = _build_model(cfg, dev)
    max_len = max_length_for(tokenizer, model.encoder_config, cfg.max_length)
    if cfg.max_length is not None and cfg.max_length > max_len:   # a preset's cap on a smaller base: said, not silent
        progress.note(f"--max-length {cfg.max_length}: the base {cfg.base} takes at most {max_len} tokens (its "
                      f"position embeddings and tokenizer); inputs are cut at {max_len}")
    train_enc = {t: encode(tokenizer, splits[(t, "train")], max_len, both_orders=TASKS[t].pair) for t in cfg.tasks}
    cache = TokenCache()   # dev and test are tokenised once for the whole run
    dev_enc = {t: cache.get(tokenizer, splits[(t, "dev")], max_len) for t in cfg.tasks}
    optimizer = make_optimizer(model, cfg)
    data_hashes = split_hashes(splits)
    run = TrainRun(cfg, run_id, model.config, model.num_parameters(), cfg.fingerprint(data_hashes), data_hashes,
                   provenance, {k: v for k, v in splits.items() if k[1] in ("dev", "test")}, dev, precision, cache)
    gen = torch.Generator().manual_seed(cfg.seed)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    stepper = Stepper(optimizer, cfg, _steps_per_epoch(cfg, train_enc) * cfg.epochs, scaler)
    loop = ckpt.LoopState.start(cfg.tasks)
    found = ckpt.find(checkpoint_dir) if resume and checkpoint_dir else None
    if found is not None:
        loop = ckpt.restore(found, model, optimizer, gen, scaler)
        stepper.step = loop.step
    epochs = [EpochResult(**{k: v for k, v in e.items() if k != "tokens_per_second"}) for e in loop.epochs]
    if on_start:
        on_start(run, epochs)
    resumed_from = loop.epoch
    while loop.epoch < cfg.epochs and not loop.stopped:
        epoch = loop.epoch + 1
        losses, seconds, tokens = _train_epoch(model, stepper, cfg, epoch, train_enc, dev, precision, gen, progress)
        dev_preds, dev_scores = _evaluate(model, dev_enc, splits, dev, precision, progress)
        improved = _account(loop, cfg, dev_scores)
        result = EpochResult(epoch, losses, dev_scores, seconds, tokens, best_for=improved, lr=stepper.last_lr)
        on_epoch(run, EpochOutput(result, dev_preds, model, tokenizer))
        epochs.append(result)
        loop.epoch, loop.step, loop.epochs = epoch, stepper.step, [e.entry() for e in epochs]
        if checkpoint_dir is not None:
            ckpt.write(checkpoint_dir, model, optimizer, gen, scaler, loop)
        if after_checkpoint:
            after_checkpoint(run, result)
    status = "stopped" if loop.stopped and loop.epoch < cfg.epochs else "complete"
    return TrainResult(cfg, run_id, run.parameters, epochs, skipped, str(dev), status=status, resumed_from=resumed_from)


def _account(loop: ckpt.LoopState, cfg: TrainConfig, dev_scores: dict[str, float]) -> list[str]:
    """Update the best scores and early stopping's count with an epoch's dev scores; returns the
    tasks the epoch is best for so far. ``--patience N`` stops once the mean dev score of the
    trained tasks has not improved (strictly) for N epochs in a row."""
    best = loop.best
    improved = [t for t in cfg.tasks if best[t] is None or dev_scores[t] > best[t]]
    for t in improved:
        best[t] = dev_scores[t]
    mean = sum(dev_scores[t] for t in cfg.tasks) / len(cfg.tasks)
    if loop.best_mean is None or mean > loop.best_mean:
        loop.best_mean, loop.since_best = mean, 0
    else:
        loop.since_best += 1
    loop.stopped = bool(cfg.patience) and loop.since_best >= cfg.patience
    return improved


def _steps_per_epoch(cfg: TrainConfig, train_enc: dict[str, Encoded]) -> int:
    """Optimizer steps per epoch: every task's ``ceil(rows / batch)`` batches, ``grad_accum`` a step."""
    batches = sum(math.ceil(len(train_enc[t]) / cfg.batch_size) for t in cfg.tasks)
    return math.ceil(batches / cfg.grad_accum)


class Stepper:
    """The optimizer step: the schedule's rate for this step on every group (times the group's
    layer-decayed rate), the loss scaler's unscaling, clipping of the global norm, the step."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: TrainConfig, total: int, scaler=None):
        self.optimizer, self.cfg, self.total, self.scaler = optimizer, cfg, max(total, 1), scaler
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.step = 0
        self.last_lr = cfg.lr * multiplier(cfg.schedule, 0, self.total, cfg.warmup)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def __call__(self) -> torch.Tensor | None:
        """One optimizer step; returns the global gradient norm before clipping (None unclipped), as a
        0-d tensor: no host sync each step on a GPU for a value the loop does not read."""
        m = multiplier(self.cfg.schedule, self.step, self.total, self.cfg.warmup)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * m
        self.last_lr = self.cfg.lr * m
        norm = None
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.cfg.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return norm


def _load_data(cfg: TrainConfig, data_dir: Path, progress: Progress) -> tuple[dict[tuple[str, str], Split], dict[str, int]]:
    """The train, dev and test files of the tasks (train cut to ``cfg.limit``), and the rows skipped."""
    splits = load_splits(data_dir, cfg.tasks, ("train", "dev", "test"))
    for (_, s), sp in splits.items():
        if s != "train":   # their ids go into the candidates' prediction files: checked before the first epoch
            check_plain_ids(sp)
    skipped = {f"{t}-{s}": sp.skipped_empty for (t, s), sp in splits.items() if sp.skipped_empty}
    for k, v in skipped.items():
        progress.note(f"{k}: skipped {v} rows with an empty label")
    if cfg.limit:
        for t in cfg.tasks:
            sp = splits[(t, "train")]
            sp.examples = sp.examples[: cfg.limit]
    return splits, skipped


def seed_heads(model: MultitaskModel, head_seed: int) -> None:
    """Draw every task head's initial weights from ``head_seed`` alone (torch's own initialisation of a
    linear layer, under a forked generator): runs that share it start from one head whatever their
    ``--seed``, so their weights can be averaged (``ensemble soup``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(head_seed)
        for task in sorted(model.heads):
            model.heads[task][-1].reset_parameters()


def _build_model(cfg: TrainConfig, dev: torch.device) -> tuple[MultitaskModel, Any, dict[str, Any] | None]:
    """The model over the pretrained base, on ``dev``; its tokenizer; the base's pretraining record."""
    base_path = resolve_base(cfg.base)
    base_model, tokenizer = load_base(base_path, cfg.hidden_dropout)
    model = MultitaskModel.from_base(cfg.model, base_model)
    if cfg.head_seed is not None:
        seed_heads(model, cfg.head_seed)
    prov_file = Path(base_path) / PROVENANCE_FILE
    provenance = documents.load_json(prov_file, what="the provenance `ensemble pretrain` writes") \
        if prov_file.is_file() else None
    model.set_gradient_checkpointing(cfg.gradient_checkpointing)
    model.to(dev)
    return model, tokenizer, provenance


def _train_epoch(model: MultitaskModel, stepper: Stepper, cfg: TrainConfig, epoch: int,
                 train_enc: dict[str, Encoded], dev: torch.device, precision: str, gen: torch.Generator,
                 progress: Progress) -> tuple[dict[str, float], float, int]:
    """One pass over every task's batches, shuffled together, ``cfg.grad_accum`` batches an
    optimizer step; returns (mean loss per task, seconds, tokens)."""
    rng = np.random.default_rng([cfg.seed, epoch])
    batches = [b for t in cfg.tasks for b in training_batches(train_enc[t], cfg.batch_size, rng)]
    order = rng.permutation(len(batches))
    model.train()
    t0 = time.perf_counter()
    sums = {t: 0.0 for t in cfg.tasks}
    counts = {t: 0 for t in cfg.tasks}
    tokens = 0
    n, k = len(order), cfg.grad_accum
    progress.start(f"epoch {epoch}/{cfg.epochs}", n)
    for j, i in enumerate(order):
        fault_point("train.step")   # the kill tests stop a run here, in the middle of an epoch
        batch = batches[i].to(dev, non_blocking=dev.type == "cuda")
        in_step = min(k, n - (j - j % k))            # batches in this optimizer step
        total, task_l = training_step(model, batch, cfg.smart, dev, precision, gen)
        stepper.backward(total / in_step if in_step > 1 else total)
        if j % k == in_step - 1:
            stepper()
        sums[batch.task] += task_l
        counts[batch.task] += 1
        tokens += batch.n_tokens
        progress.advance(1, task=batch.task, loss=sums[batch.task] / counts[batch.task])
    progress.stop()
    seconds = time.perf_counter() - t0
    return {t: sums[t] / max(counts[t], 1) for t in cfg.tasks}, seconds, tokens


def _evaluate(model: MultitaskModel, dev_enc: dict[str, Encoded], splits: dict[tuple[str, str], Split],
              dev: torch.device, precision: str, progress: Progress):
    """Dev predictions ``(task, "dev") -> (ids, values)`` and dev scores per task."""
    dev_preds, dev_scores = {}, {}
    for t, enc in dev_enc.items():
        progress.start(f"dev {t}", len(enc))
        p = predict_encoded(model, enc, dev, precision, progress=progress)
        progress.stop()
        dev_preds[(t, "dev")] = (enc.ids, p)
        dev_scores[t] = score(t, p, splits[(t, "dev")].labels)
    return dev_preds, dev_scores
