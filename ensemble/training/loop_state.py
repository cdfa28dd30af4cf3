"""The training loop's state between epochs (:class:`LoopState`) and what can be read of a
fine-tuning checkpoint without torch: where it is (:func:`find`) and the loop's part of it
(:func:`read_loop`), so that planning a run (``ensemble run``, ``--dry-run``, the Ray driver) loads
no torch. The checkpoint itself, tensors included, is :mod:`ensemble.training.checkpoint`'s.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .. import documents
from ..errors import EnsembleError
from ..files import check_inside

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


def check_folder(folder: Path) -> None:
    """Refuse a checkpoint folder (or its ``.old``/``.new`` twin) that is not a plain folder inside
    its run: a symlink or a file there is named, nothing is read or written."""
    folder = Path(folder)
    for d in (folder, folder.with_name(folder.name + ".old"), folder.with_name(folder.name + ".new")):
        if d.is_symlink() or d.exists() and not d.is_dir():
            raise EnsembleError(f"{d}: not a plain folder ({'a symlink' if d.is_symlink() else 'a file'}); expected the "
                                "run's checkpoint folder; remove it and run again (the run restarts from its start)")
        if d.exists():
            check_inside(folder.parent, d, "checkpoint folder")


def find(folder: Path) -> Path | None:
    """The complete checkpoint at ``folder`` (or its ``.old`` twin after a kill between renames)."""
    folder = Path(folder)
    check_folder(folder)
    for d in (folder, folder.with_name(folder.name + ".old")):
        if all((d / f).is_file() for f in (WEIGHTS, OPTIMIZER, STATE)):
            return d
    return None


def read_state(folder: Path) -> dict[str, Any]:
    """The checkpoint's ``state.json``, checked by :class:`ensemble.documents.CheckpointState` (the
    checked JSON object is returned, its ``loop`` handed on as written)."""
    path = Path(folder) / STATE
    checked, state = documents.read(path, documents.CheckpointState, "a checkpoint state written by `ensemble train`")
    for i, e in enumerate(checked.loop.epochs):
        if e.epoch != i + 1:
            raise EnsembleError(f"{path}: loop.epochs[{i}].epoch: expected {i + 1}, got {e.epoch}")
    if len(checked.loop.epochs) != checked.loop.epoch:
        raise EnsembleError(f"{path}: loop.epochs: {len(checked.loop.epochs)} epochs, expected loop.epoch's "
                            f"{checked.loop.epoch}")
    return state


def read_loop(folder: Path) -> LoopState:
    """The training loop's part of the checkpoint at ``folder`` (:func:`find`'s answer)."""
    return LoopState.from_dict(read_state(folder)["loop"], Path(folder) / STATE)
