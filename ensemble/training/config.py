"""A training run's configuration (:class:`TrainConfig`), its checks and its fingerprint.

Every option is a plain dataclass field with a default, checked in ``__post_init__`` by
:data:`_CHECKS` with a message naming the command-line option. The fingerprint (same
configuration, same data) leaves out the options added after the first registries were written
(:data:`LATER_FIELDS`) while they keep their defaults, so those registries keep their fingerprints.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

from ..modeling.batches import MIN_MAX_LENGTH
from ..errors import EnsembleError
from .smart import SmartConfig
from ..tasks import TASK_NAMES

SCHEDULES = ("constant", "linear", "cosine", "slanted")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

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
    (lambda c: 0 <= c.seed < 2**32, "--seed must be in [0, 2^32) (numpy's seeds)"),
    (lambda c: c.max_length is None or c.max_length >= MIN_MAX_LENGTH,
     f"--max-length must be >= {MIN_MAX_LENGTH} tokens ([CLS], two [SEP]s and a word piece of each sentence); "
     "leave it out for the model's own limit"),
    (lambda c: c.precision in PRECISIONS, "--precision: expected auto, fp32, bf16 or fp16"),
    (lambda c: c.schedule in SCHEDULES, f"--schedule: expected one of {', '.join(SCHEDULES)}"),
    (lambda c: 0 <= c.warmup < 1, "--warmup must be a fraction of the training steps in [0, 1)"),
    (lambda c: c.schedule != "slanted" or c.warmup > 0,
     "--schedule slanted needs --warmup > 0 (the fraction of steps the rate rises: Howard and Ruder's cut_frac, "
     "0.1 in their paper)"),
    (lambda c: c.grad_accum >= 1, "--grad-accum must be >= 1 (batches per optimizer step)"),
    (lambda c: c.max_grad_norm >= 0, "--max-grad-norm must be >= 0 (0 = no clipping)"),
    (lambda c: c.patience >= 0, "--patience must be >= 0 (0 = train every epoch)"),
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
    schedule: str = "constant"   # learning-rate schedule over all steps (ensemble.training.schedule)
    warmup: float = 0.0          # fraction of the steps spent warming up (slanted: cut_frac)
    grad_accum: int = 1          # batches per optimizer step
    max_grad_norm: float = 0.0   # clip the global gradient norm to this (0 = off)
    gradient_checkpointing: bool = False
    patience: int = 0            # stop when the mean dev score has not improved for N epochs (0 = off)

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
        """Same configuration and same data -> same fingerprint (used to skip finished runs). The
        options of :data:`LATER_FIELDS` count only away from their defaults."""
        config = {k: v for k, v in self.to_dict().items() if not (k in LATER_FIELDS and v == LATER_FIELDS[k])}
        blob = json.dumps({"config": config, "data": data_hashes}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def run_name(self) -> str:
        arch = f"cerberus-{self.task_layers}" if self.architecture == "cerberus" else self.architecture
        smart = f"-smart{self.smart_weight:g}" if self.smart_weight else ""
        return f"{arch}-{'+'.join(self.tasks)}{smart}-s{self.seed}"


# the options added after registries were first written, with their defaults (left out of the fingerprint there)
LATER_FIELDS: dict[str, Any] = {f.name: f.default for f in fields(TrainConfig)
                                if f.name in ("schedule", "warmup", "grad_accum", "max_grad_norm",
                                              "gradient_checkpointing", "patience")}
