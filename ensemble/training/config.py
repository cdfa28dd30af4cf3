"""A training run's configuration, declared once: every option's default, its help text, its help
panel and its check (no torch). The ``train`` command's options, grid files' keys, the Ray driver
and ``--dry-run`` all read them from here.

Every option is a plain dataclass field made by :func:`option` and checked in ``__post_init__`` by
:data:`_CHECKS` with a message naming the command-line option. The fingerprint (same
configuration, same data) leaves out the options added after the first registries were written
(:data:`LATER_FIELDS`) while they keep their defaults, so those registries keep their fingerprints.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, ClassVar

from ..errors import EnsembleError
from ..modeling.config import ARCHITECTURES, MIN_MAX_LENGTH, ModelConfig
from ..tasks import TASK_NAMES, TASKS, parse_tasks

SCHEDULES = ("constant", "linear", "cosine", "slanted")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MODEL, OPTIM, SMART, DATA = "Model", "Optimisation", "SMART", "Data"   # help panels
BASE_HELP = "Encoder: hub name, local folder, or 'minilm' (offline stand-in)."
TASKS_HELP = "Comma-separated subset of sst,para,sts."


def option(default: Any, help: str, panel: str, *, choices: tuple[str, ...] = (), short: str = "") -> Any:
    """A training option: its default and how ``ensemble train --help`` shows it (the help text, the
    panel, the fixed values it takes, a short flag)."""
    return field(default=default, metadata={"help": help, "panel": panel, "choices": choices, "short": short})


@dataclass(frozen=True)
class SmartConfig:
    weight: float = 0.0     # lambda_s; 0 turns SMART off
    steps: int = 1          # ascent steps
    sigma: float = 1e-5     # initial noise standard deviation
    eta: float = 1e-3       # ascent step size
    epsilon: float = 1e-6   # added to the l_inf norm when normalising


def _finite(*names: str) -> Callable[["TrainConfig"], bool]:
    return lambda c: all(math.isfinite(getattr(c, n)) for n in names)


_CHECKS: tuple[tuple[Callable[["TrainConfig"], bool], str], ...] = (
    (_finite("lr", "weight_decay", "layer_decay", "head_lr_mult", "embed_lr_mult", "head_dropout", "hidden_dropout",
             "smart_weight", "smart_sigma", "smart_eta", "smart_epsilon", "warmup", "max_grad_norm"),
     "training options must be finite numbers (inf or nan given)"),
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
    (lambda c: c.head_seed is None or 0 <= c.head_seed < 2**32, "--head-seed must be in [0, 2^32) (numpy's seeds)"),
    (lambda c: c.max_length is None or c.max_length >= MIN_MAX_LENGTH,
     f"--max-length must be >= {MIN_MAX_LENGTH} tokens ([CLS], two [SEP]s and a word piece of each sentence); "
     "leave it out for the model's own limit"),
    (lambda c: c.precision in PRECISIONS, f"--precision: expected one of {', '.join(PRECISIONS)}"),
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
    base: str = option("bert-base-uncased", BASE_HELP, MODEL)
    architecture: str = option("multi", "How the tasks share the encoder.", MODEL, choices=ARCHITECTURES, short="-a")
    task_layers: int = option(0, "cerberus: top K layers copied per task.", MODEL)
    tasks: tuple[str, ...] = option(TASK_NAMES, TASKS_HELP, DATA)
    lr: float = option(1e-5, "Base learning rate (top encoder layer).", OPTIM)
    epochs: int = option(10, "Epochs; each epoch best for some task becomes a candidate.", OPTIM)
    batch_size: int = option(16, "Examples per training batch.", OPTIM)
    weight_decay: float = option(1e-4, "AdamW weight decay (1e-5 suits SST alone).", OPTIM)
    layer_decay: float = option(0.95, "Learning-rate factor per layer below the top.", OPTIM)
    head_lr_mult: float = option(1.0, "Head learning rate = lr x this.", OPTIM)
    embed_lr_mult: float = option(1.0, "Extra factor on the embeddings' rate; 0 freezes them.", OPTIM)
    head_dropout: float = option(0.0, "Dropout before each task head.", MODEL)
    hidden_dropout: float = option(0.1, "The encoder's hidden-layer dropout.", MODEL)
    smart_weight: float = option(0.0, "SMART lambda_s (0 = off; 10-15 in the report's best models).", SMART)
    smart_steps: int = option(1, "Ascent steps on the perturbation.", SMART)
    smart_sigma: float = option(1e-5, "Standard deviation of the initial embedding noise.", SMART)
    smart_eta: float = option(1e-3, "Ascent step size.", SMART)
    smart_epsilon: float = option(1e-6, "Added to the l-inf norm when the noise is normalised.", SMART)
    seed: int = option(0, "Seed of initialisation, shuffling and dropout.", OPTIM)
    head_seed: int | None = option(None, "Seed of the task heads' initialisation alone (default: --seed), so that "
                                   "runs of a grid with other seeds start from one head and can be souped.", MODEL)
    limit: int | None = option(None, "Use the first N training examples per task.", DATA)
    max_length: int | None = option(None, "Truncate inputs to N tokens (default: the model's limit).", MODEL)
    precision: str = option("auto", "Training autocast: auto (bf16 on CUDA, fp32 on CPU), fp32, bf16 (a CPU needs "
                            "bf16 instructions), fp16 (CUDA only, with loss scaling).", OPTIM, choices=PRECISIONS)
    schedule: str = option("constant", "Learning-rate schedule over all steps (slanted: slanted triangular, Howard "
                           "and Ruder 2018); layer decay applies on top.", OPTIM, choices=SCHEDULES)
    warmup: float = option(0.0, "Fraction of the steps warming up from 0 (slanted: the fraction rising, cut_frac).",
                           OPTIM)
    grad_accum: int = option(1, "Batches per optimizer step (effective batch = batch size x N; the tasks of one "
                             "step may differ).", OPTIM)
    max_grad_norm: float = option(0.0, "Clip the global gradient norm to this (0 = off).", OPTIM)
    gradient_checkpointing: bool = option(False, "Recompute each layer's activations in the backward pass (less "
                                          "memory, slower).", OPTIM)
    patience: int = option(0, "Stop when the mean dev score has not improved for N epochs (0 = off).", OPTIM)
    varies: tuple = ()   # the options a grid varies: their values go into the run's name (no option, no fingerprint)

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        self.varies = tuple(self.varies)
        for ok, msg in _CHECKS:
            if not ok(self):
                raise EnsembleError(msg)
        self.model   # the architecture, tasks and task layers, checked by the model's own config

    @property
    def model(self) -> ModelConfig:
        """The model this run trains (its encoder config is filled in when the base is loaded)."""
        return ModelConfig(self.architecture, self.tasks, self.task_layers, self.head_dropout, base=self.base,
                           max_length=self.max_length)

    @property
    def smart(self) -> SmartConfig:
        return SmartConfig(self.smart_weight, self.smart_steps, self.smart_sigma, self.smart_eta, self.smart_epsilon)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        d["varies"] = list(self.varies)
        return d

    def fingerprint(self, data_hashes: dict[str, str]) -> str:
        """Same configuration and same data -> same fingerprint (used to skip finished runs). The
        options of :data:`LATER_FIELDS` count only away from their defaults."""
        config = {k: v for k, v in self.to_dict().items()
                  if not (k in LATER_FIELDS and v == LATER_FIELDS[k]) and k != "varies"}
        blob = json.dumps({"config": config, "data": data_hashes}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def run_name(self) -> str:
        arch = f"cerberus-{self.task_layers}" if self.architecture == "cerberus" else self.architecture
        smart = f"-smart{self.smart_weight:g}" if self.smart_weight else ""
        varied = "".join(f"-{SHORT_NAMES.get(k, k.replace('_', ''))}{_name_value(getattr(self, k))}"
                         for k in self.varies if k not in IN_NAME)
        return f"{arch}-{'+'.join(self.tasks)}{smart}{varied}-s{self.seed}"


# the options a run's name always shows; a grid's other varied options go in as SHORT_NAMES value
IN_NAME = ("architecture", "task_layers", "tasks", "smart_weight", "seed", "base", "varies")
SHORT_NAMES = {"lr": "lr", "layer_decay": "ld", "weight_decay": "wd", "batch_size": "bs", "epochs": "ep",
               "head_dropout": "hd", "hidden_dropout": "dr", "head_lr_mult": "hlr", "embed_lr_mult": "elr",
               "warmup": "wu", "schedule": "", "grad_accum": "ga", "max_length": "len", "limit": "n",
               "precision": "", "patience": "pat", "max_grad_norm": "clip", "gradient_checkpointing": "gc"}


def _name_value(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


# the options added after registries were first written, with their defaults (left out of the fingerprint there)
LATER_FIELDS: dict[str, Any] = {f.name: f.default for f in fields(TrainConfig)
                                if f.name in ("schedule", "warmup", "grad_accum", "max_grad_norm",
                                              "gradient_checkpointing", "patience", "head_seed")}


@dataclass
class PretrainConfig:
    """The settings of one pretraining run; checked when built."""
    base: str = option("bert-base-uncased", "Encoder to adapt: " + BASE_HELP[len("Encoder: "):], MODEL)
    tasks: tuple[str, ...] = option(TASK_NAMES, TASKS_HELP, DATA)
    steps: int = option(1000, "Optimiser steps of masked-language-model training (a resumed run continues to it).",
                        OPTIM)
    lr: float = option(1e-5, "Base learning rate (top encoder layer).", OPTIM)
    layer_decay: float = option(1.0, "Learning-rate factor per layer below the top.", OPTIM)
    batch_size: int = option(32, "Texts per batch.", OPTIM)
    seed: int = option(0, "Seed of masking, shuffling and dropout.", OPTIM)
    checkpoint_every: int = option(500, "Save a resumable checkpoint every K steps (0: only at the end).", OPTIM)
    include_eval_inputs: bool = option(False, "Also use the (unlabelled) dev and test inputs' text.", DATA)
    mask_prob: float = 0.15
    max_length: int | None = None
    weight_decay: float = 0.01
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    perplexity_limit: int = 2000    # perplexity on at most this many dev inputs per task (0: none)
    # read by train.param_groups: pretraining keeps the fine-tuning multipliers at 1
    head_lr_mult: ClassVar[float] = 1.0
    embed_lr_mult: ClassVar[float] = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.tasks, str):
            self.tasks = parse_tasks(self.tasks)
        bad = [t for t in self.tasks if t not in TASKS]
        if not self.tasks or bad:
            raise EnsembleError(
                f"--tasks {','.join(map(str, self.tasks))}: expected a non-empty subset of {','.join(TASK_NAMES)}")
        self.tasks = tuple(t for t in TASK_NAMES if t in set(self.tasks))
        checks = [
            (self.steps >= 1, f"--steps {self.steps}: expected at least 1"),
            (self.batch_size >= 1, f"--batch-size {self.batch_size}: expected at least 1"),
            (0.0 < self.mask_prob < 1.0,
             f"--mask-prob {self.mask_prob}: expected a probability between 0 and 1 (BERT: 0.15)"),
            (self.lr > 0, f"--lr {self.lr}: expected a positive learning rate"),
            (0.0 < self.layer_decay <= 1.0, f"--layer-decay {self.layer_decay}: expected a factor in (0, 1]"),
            (self.checkpoint_every >= 0 and self.warmup_steps >= 0,
             "--checkpoint-every and warm-up steps must not be negative"),
        ]
        for ok, msg in checks:
            if not ok:
                raise EnsembleError(msg)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        return d
