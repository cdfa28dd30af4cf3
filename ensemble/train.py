"""Multitask fine-tuning: every option of the method, each epoch evaluated on dev and handed to the
caller (``on_epoch``); :func:`ensemble.register.train_into` turns the best epochs into candidates.

One batch holds one task; the batches of all tasks are shuffled together (no weighting by dataset
size). AdamW with layer-wise learning-rate decay: the top encoder layer gets the base rate, each
layer below it the rate times ``layer_decay``, the embeddings one step below the bottom layer
(times ``embed_lr_mult``; 0 freezes them), the pooler the base rate and the heads the base rate
times ``head_lr_mult``. Weight decay applies to weight matrices, not to biases and LayerNorm.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .batches import MIN_MAX_LENGTH, Encoded, encode, max_length_for, training_batches
from .data import Split, load_splits, split_hashes
from .errors import EnsembleError
from .infer import TokenCache, autocast, pick_device, predict_encoded
from .metrics import score
from .bases import load_base, resolve_base
from .model import ModelConfig, MultitaskModel, save_model, task_loss
from .progress import NULL, Progress
from .smart import SmartConfig, smart_loss
from .tasks import TASK_NAMES, TASKS


_CHECKS: tuple[tuple[Callable[["TrainConfig"], bool], str], ...] = (
    (lambda c: c.lr > 0, "--lr must be > 0"), (lambda c: c.epochs >= 1, "--epochs must be >= 1"),
    (lambda c: c.batch_size >= 1, "--batch-size must be >= 1"),
    (lambda c: c.weight_decay >= 0, "--weight-decay must be >= 0"),
    (lambda c: 0 < c.layer_decay <= 1, "--layer-decay must be in (0, 1]"),
    (lambda c: c.head_lr_mult > 0, "--head-lr-mult must be > 0"),
    (lambda c: c.embed_lr_mult >= 0, "--embed-lr-mult must be >= 0"),
    (lambda c: 0 <= c.head_dropout < 1, "--head-dropout must be in [0, 1)"),
    (lambda c: 0 <= c.hidden_dropout < 1, "--hidden-dropout must be in [0, 1)"),
    (lambda c: c.smart_weight >= 0, "--smart-weight must be >= 0"),
    (lambda c: c.smart_steps >= 1, "--smart-steps must be >= 1"),
    (lambda c: c.limit is None or c.limit >= 1, "--limit must be >= 1"),
    (lambda c: c.max_length is None or c.max_length >= MIN_MAX_LENGTH,
     f"--max-length must be >= {MIN_MAX_LENGTH} tokens ([CLS], two [SEP]s and a word piece of each sentence); "
     "leave it out for the model's own limit"),
    (lambda c: c.precision in ("auto", "fp32", "bf16", "fp16"), "--precision: expected auto, fp32, bf16 or fp16"),
)


@dataclass
class TrainConfig:
    base: str = "bert-base-uncased"
    architecture: str = "multi"
    task_layers: int = 0
    tasks: tuple[str, ...] = TASK_NAMES
    lr: float = 1e-5
    epochs: int = 10
    batch_size: int = 16
    weight_decay: float = 1e-4
    layer_decay: float = 0.95
    head_lr_mult: float = 1.0
    embed_lr_mult: float = 1.0
    head_dropout: float = 0.0
    hidden_dropout: float = 0.1
    smart_weight: float = 0.0
    smart_steps: int = 1
    smart_sigma: float = 1e-5
    smart_eta: float = 1e-3
    smart_epsilon: float = 1e-6
    seed: int = 0
    limit: int | None = None
    max_length: int | None = None
    precision: str = "auto"      # autocast while training: auto = bf16 on CUDA, fp32 on CPU

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        for ok, msg in _CHECKS:
            if not ok(self):
                raise EnsembleError(msg)

    @property
    def smart(self) -> SmartConfig:
        return SmartConfig(self.smart_weight, self.smart_steps, self.smart_sigma, self.smart_eta, self.smart_epsilon)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        return d

    def fingerprint(self, data_hashes: dict[str, str]) -> str:
        """Same configuration and same data -> same fingerprint (used to skip finished runs)."""
        blob = json.dumps({"config": self.to_dict(), "data": data_hashes}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def run_name(self) -> str:
        arch = f"cerberus-{self.task_layers}" if self.architecture == "cerberus" else self.architecture
        smart = f"-smart{self.smart_weight:g}" if self.smart_weight else ""
        return f"{arch}-{'+'.join(self.tasks)}{smart}-s{self.seed}"


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


@dataclass
class TrainResult:
    config: TrainConfig
    run_id: str
    parameters: int
    epochs: list[EpochResult]
    skipped_empty: dict[str, int]
    device: str
    candidates: list[str] = field(default_factory=list)   # filled in by the keeper (ensemble.register)

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "run_id": self.run_id, "parameters": self.parameters,
                "epochs": [asdict(e) for e in self.epochs], "candidates": self.candidates,
                "skipped_empty": self.skipped_empty, "device": self.device}


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
          device: str | None = None, progress: Progress = NULL) -> TrainResult:
    """Fine-tune for ``cfg.epochs`` epochs, calling ``on_epoch(run, output)`` after each one's dev
    evaluation (the keeper that registers candidates is :func:`ensemble.register.train_into`)."""
    dev = pick_device(device)
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if dev.type == "cuda" else "fp32")
    torch.manual_seed(cfg.seed)
    splits, skipped = _load_data(cfg, Path(data_dir), progress)
    model, tokenizer, provenance = _build_model(cfg, dev)
    max_len = max_length_for(tokenizer, model.encoder_config, cfg.max_length)
    train_enc = {t: encode(tokenizer, splits[(t, "train")], max_len, both_orders=TASKS[t].pair) for t in cfg.tasks}
    cache = TokenCache()   # dev and test are tokenised once for the whole run
    dev_enc = {t: cache.get(tokenizer, splits[(t, "dev")], max_len) for t in cfg.tasks}
    optimizer = make_optimizer(model, cfg)
    data_hashes = split_hashes(splits)
    run = TrainRun(cfg, run_id, model.config, model.num_parameters(), cfg.fingerprint(data_hashes), data_hashes,
                   provenance, {k: v for k, v in splits.items() if k[1] in ("dev", "test")}, dev, precision, cache)
    best: dict[str, float] = {t: -np.inf for t in cfg.tasks}
    epochs: list[EpochResult] = []
    gen = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(1, cfg.epochs + 1):
        losses, seconds, tokens = _train_epoch(model, optimizer, cfg, epoch, train_enc, dev, precision, gen, progress)
        dev_preds, dev_scores = _evaluate(model, dev_enc, splits, dev, precision, progress)
        improved = [t for t in cfg.tasks if dev_scores[t] > best[t]]
        for t in improved:
            best[t] = dev_scores[t]
        result = EpochResult(epoch, losses, dev_scores, seconds, tokens, best_for=improved)
        on_epoch(run, EpochOutput(result, dev_preds, model, tokenizer))
        epochs.append(result)
    return TrainResult(cfg, run_id, run.parameters, epochs, skipped, str(dev))


def _load_data(cfg: TrainConfig, data_dir: Path, progress: Progress) -> tuple[dict[tuple[str, str], Split], dict[str, int]]:
    """The train, dev and test files of the tasks (train cut to ``cfg.limit``), and the rows skipped."""
    splits = load_splits(data_dir, cfg.tasks, ("train", "dev", "test"))
    skipped = {f"{t}-{s}": sp.skipped_empty for (t, s), sp in splits.items() if sp.skipped_empty}
    for k, v in skipped.items():
        progress.note(f"{k}: skipped {v} rows with an empty label")
    if cfg.limit:
        for t in cfg.tasks:
            sp = splits[(t, "train")]
            sp.examples = sp.examples[: cfg.limit]
    return splits, skipped


def _build_model(cfg: TrainConfig, dev: torch.device) -> tuple[MultitaskModel, Any, dict[str, Any] | None]:
    """The model over the pretrained base, on ``dev``; its tokenizer; the base's pretraining record."""
    base_path = resolve_base(cfg.base)
    base_model, tokenizer = load_base(base_path, cfg.hidden_dropout)
    mcfg = ModelConfig(cfg.architecture, cfg.tasks, cfg.task_layers, cfg.head_dropout, cfg.hidden_dropout, base=cfg.base,
                       max_length=cfg.max_length)
    model = MultitaskModel.from_base(mcfg, base_model)
    prov_file = Path(base_path) / "ensemble_pretrain.json"
    provenance = json.loads(prov_file.read_text()) if prov_file.is_file() else None
    model.to(dev)
    return model, tokenizer, provenance


def _train_epoch(model: MultitaskModel, optimizer: torch.optim.Optimizer, cfg: TrainConfig, epoch: int,
                 train_enc: dict[str, Encoded], dev: torch.device, precision: str, gen: torch.Generator,
                 progress: Progress) -> tuple[dict[str, float], float, int]:
    """One pass over every task's batches, shuffled together; returns (mean loss per task, seconds, tokens)."""
    rng = np.random.default_rng([cfg.seed, epoch])
    batches = [b for t in cfg.tasks for b in training_batches(train_enc[t], cfg.batch_size, rng)]
    order = rng.permutation(len(batches))
    model.train()
    t0 = time.perf_counter()
    sums = {t: 0.0 for t in cfg.tasks}
    counts = {t: 0 for t in cfg.tasks}
    tokens = 0
    progress.start(f"epoch {epoch}/{cfg.epochs}", len(batches))
    for i in order:
        batch = batches[i].to(dev, non_blocking=dev.type == "cuda")
        total, task_l = training_step(model, batch, cfg.smart, dev, precision, gen)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
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
