"""Training: fine-tuning the multitask model and further pretraining its encoder.

Files, in flow order:

``config``
    :class:`TrainConfig` and :class:`SmartConfig`: every training option, its default, its help
    text and its check, declared once (no torch); the CLI, grid files and Ray read them from here.
``schedule``
    learning-rate schedules (constant, linear, cosine, slanted triangular) with warm-up (no torch).
``smart``
    SMART adversarial regularisation (Jiang et al. 2020).
``loop_state``
    the training loop's state between epochs, and a checkpoint's place and loop state read
    without torch (what planning a run needs).
``checkpoint``
    the per-epoch resume checkpoint of a fine-tuning run (safetensors and JSON, no pickle).
``finetune``
    the fine-tuning loop: each epoch evaluated on dev and handed to the caller.
``mlm``
    the masked-language model: loading with its head, masking, loss, perplexity.
``mlm_checkpoint``
    a pretraining run's resumable checkpoint and exported encoder folder.
``pretrain``
    further masked-language-model pretraining on the tasks' own text.
"""
from .. import lazy_names

FILES = ("config", "schedule", "smart", "loop_state", "checkpoint", "finetune", "mlm", "mlm_checkpoint", "pretrain")
__all__ = ["TrainConfig", "SmartConfig", "train", "TrainResult", "PretrainConfig", "pretrain"]
__getattr__ = lazy_names(__name__, {"TrainConfig": "config", "SmartConfig": "config", "train": "finetune",
                                    "TrainResult": "finetune", "PretrainConfig": "pretrain", "pretrain": "pretrain"})
