"""The training loop's state between epochs (:class:`LoopState`) and what can be read of a
fine-tuning checkpoint without torch: where it is (:func:`find`) and the loop's part of it
(:func:`read_loop`), so that planning a run (``ensemble run``, ``--dry-run``, the Ray driver) loads
no torch. The checkpoint itself, tensors included, is :mod:`ensemble.training.checkpoint`'s.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import EnsembleError

WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"
STATE = "state.json"


@dataclass
class LoopState:
    """What the training loop carries from epoch to epoch, saved with each epoch's checkpoint
    (``state.json``'s "loop", one key per field, as checkpoints have always held it)."""
    epoch: int = 0                                   # the last completed epoch
    step: int = 0                                    # optimizer steps taken
    best: dict[str, float | None] = field(default_factory=dict)   # task -> best dev score so far
    best_mean: float | None = None                   # the best mean dev score (early stopping)
    since_best: int = 0                              # epochs since it last improved
    stopped: bool = False                            # --patience ended the run
    epochs: list[dict[str, Any]] = field(default_factory=list)    # the epochs' record entries

    @classmethod
    def start(cls, tasks) -> "LoopState":
        """A run's state before its first epoch: no best score for any of ``tasks``."""
        return cls(best={t: None for t in tasks})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, loop: Any, where: Path) -> "LoopState":
        """The state saved in ``where``; an error naming the file and the missing field."""
        if not isinstance(loop, dict):
            raise EnsembleError(f"{where}: field 'loop': expected a JSON object (the training loop's state)")
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in loop]
        if missing:
            raise EnsembleError(f"{where}: field 'loop' has no {missing[0]!r}; expected the fields "
                                f"{', '.join(names)} (a checkpoint written by `ensemble train`)")
        return cls(**{n: loop[n] for n in names})


def find(folder: Path) -> Path | None:
    """The complete checkpoint at ``folder`` (or its ``.old`` twin after a kill between renames)."""
    folder = Path(folder)
    for d in (folder, folder.with_name(folder.name + ".old")):
        if all((d / f).is_file() for f in (WEIGHTS, OPTIMIZER, STATE)):
            return d
    return None


def read_loop(folder: Path) -> LoopState:
    """The training loop's part of the checkpoint at ``folder`` (:func:`find`'s answer)."""
    path = Path(folder) / STATE
    try:
        loop = json.loads(path.read_text())["loop"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EnsembleError(f"{path}: unreadable checkpoint state ({type(e).__name__}: {e})") from None
    return LoopState.from_dict(loop, path)
