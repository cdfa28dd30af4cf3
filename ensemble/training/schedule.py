"""Learning-rate schedules: a multiplier of every parameter group's own rate per optimizer step.

Each group's rate is its layer-decayed rate (:func:`ensemble.training.finetune.param_groups`) times the
multiplier of the step, so layer decay applies on top of the schedule. Step ``s`` counts from 0
(the first optimizer step), ``total`` steps in all, ``w = ceil(warmup * total)`` warm-up steps:

============  ======================================================================================
constant      ``s / w`` while ``s < w``, then 1 (no warm-up: 1 throughout, the report's rate)
linear        ``s / w`` while ``s < w``, then ``(total - s) / (total - w)``: down to 0 at the end
cosine        ``s / w`` while ``s < w``, then ``(1 + cos(pi * (s - w) / (total - w))) / 2``
slanted       slanted triangular (Howard and Ruder 2018, ULMFiT): ``cut = floor(total * warmup)``,
              ``p = s / cut`` while ``s < cut``, else ``1 - (s - cut) / (total - cut)``;
              multiplier ``(1 + p * (ratio - 1)) / ratio`` with ``ratio = 32`` (from 1/32 up to 1
              and back)
============  ======================================================================================

The warm-up and decay formulas are those of Hugging Face's ``get_*_schedule_with_warmup``
(``warmup_ratio`` rounded up to whole steps), so a Trainer user finds the rates they know.
No torch here: the training loop writes ``group["lr"] = base_lr * multiplier(step)`` itself.
"""
from __future__ import annotations

import math

SLANTED_RATIO = 32


def warmup_steps(total: int, warmup: float) -> int:
    return math.ceil(warmup * total)


def multiplier(schedule: str, step: int, total: int, warmup: float = 0.0) -> float:
    """The factor on every group's rate for optimizer step ``step`` (0-based) of ``total``."""
    if schedule == "slanted":
        cut = max(1, math.floor(total * warmup))
        p = step / cut if step < cut else 1 - (step - cut) / max(1, total - cut)
        return (1 + max(p, 0.0) * (SLANTED_RATIO - 1)) / SLANTED_RATIO
    w = warmup_steps(total, warmup)
    if step < w:
        return step / w
    if schedule == "constant":
        return 1.0
    progress = (step - w) / max(1, total - w)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    if schedule == "cosine":
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    raise ValueError(f"unknown schedule {schedule!r}")
