"""The files of a pretraining run: the resumable checkpoint and the exported encoder directory.

``out/checkpoint/`` holds the last checkpoint (model, AdamW state as safetensors tensors + JSON,
step), written aside and renamed into place. The export is staged aside and renamed into ``out``,
its provenance file last (the directory is incomplete until it is back). No pickle files are ever
written.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from .checkpoint import check_folder, optimizer_tensors, restore_optimizer
from .. import documents
from ..errors import EnsembleError
from ..files import refuse_pickles
from ..modeling.config import PROVENANCE_FILE
from ..modeling.model import load_tensors, save_tensors
from ..modeling.bases import quiet_transformers

CHECKPOINT_DIR = "checkpoint"
WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"
STATE = "state.json"


def checkpoint_to_resume(out: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from (``resume``), or None after checking ``out`` may be written."""
    if resume:
        ckpt_dir = find_checkpoint(out) if out.is_dir() else None
        if ckpt_dir is None:
            raise EnsembleError(
                f"--resume: no checkpoint in {out / CHECKPOINT_DIR} (expected {STATE}, {WEIGHTS}, {OPTIMIZER}); "
                "run without --resume to start"
            )
        return ckpt_dir
    if out.exists():
        if not out.is_dir():
            raise EnsembleError(f"--out {out}: exists and is not a directory")
        if any(out.iterdir()):
            raise EnsembleError(
                f"--out {out}: directory exists and is not empty; pass --resume to continue the run saved "
                "there, or choose a new directory"
            )
    return None


def _unique_state(mlm) -> dict[str, torch.Tensor]:
    """The model's state dict without tied duplicates (safetensors refuses shared storage)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for k, v in mlm.state_dict().items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset())
        if key in seen:
            continue
        seen.add(key)
        out[k] = v.detach().contiguous().cpu()
    return out


def _save_optimizer(optimizer: torch.optim.Optimizer, directory: Path) -> dict[str, Any]:
    """AdamW state tensors into ``optimizer.safetensors``; scalars returned for the JSON state."""
    tensors, scalars = optimizer_tensors(optimizer)
    save_tensors(tensors, directory / OPTIMIZER)
    return scalars


def load_optimizer(optimizer: torch.optim.Optimizer, directory: Path, scalars: dict[str, Any]) -> None:
    """Restore the AdamW state written by :func:`write_checkpoint` (``scalars`` from its JSON state)."""
    restore_optimizer(optimizer, load_tensors(directory / OPTIMIZER), scalars, directory / OPTIMIZER)


def write_checkpoint(out: Path, mlm, pooler_sd: dict, optimizer, state: dict[str, Any]) -> None:
    """``out/checkpoint/``: weights, AdamW state and ``state``, written aside and renamed into place."""
    final = out / CHECKPOINT_DIR
    tmp = out / f"{CHECKPOINT_DIR}.tmp"
    old = out / f"{CHECKPOINT_DIR}.old"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    weights = {**_unique_state(mlm), **pooler_sd}
    save_tensors(weights, tmp / WEIGHTS)
    state = dict(state)
    state["optimizer_scalars"] = _save_optimizer(optimizer, tmp)
    (tmp / STATE).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def read_state(directory: Path) -> documents.PretrainState:
    """The checkpoint's ``state.json`` as its model (:class:`ensemble.documents.PretrainState`)."""
    return documents.read(directory / STATE, documents.PretrainState,
                          "a checkpoint state written by `ensemble pretrain`")[0]


def find_checkpoint(out: Path) -> Path | None:
    check_folder(out / CHECKPOINT_DIR)   # a file or a symlink there is refused, naming it
    for name in (CHECKPOINT_DIR, f"{CHECKPOINT_DIR}.old"):  # .old: a crash between the renames
        d = out / name
        if (d / STATE).is_file() and (d / WEIGHTS).is_file() and (d / OPTIMIZER).is_file():
            return d
    return None


def load_checkpoint_weights(mlm, directory: Path) -> dict[str, torch.Tensor]:
    """Load the checkpoint weights into ``mlm``; return the pooler tensors stored beside them."""
    sd = load_tensors(directory / WEIGHTS)
    model_keys = set(mlm.state_dict())
    pooler = {k: v for k, v in sd.items() if k not in model_keys}
    rest = {k: v for k, v in sd.items() if k in model_keys}
    try:
        missing, _ = mlm.load_state_dict(rest, strict=False)
    except RuntimeError as e:   # a tensor of another shape
        raise EnsembleError(f"{directory / WEIGHTS}: checkpoint does not match the base "
                            f"({str(e).splitlines()[-1].strip()})") from None
    # tied aliases (e.g. the decoder weight) are loaded through the parameter they share
    current = mlm.state_dict()

    def where(t: torch.Tensor) -> tuple[int, int]:
        return t.untyped_storage().data_ptr(), t.storage_offset()

    loaded = {where(current[k]) for k in rest}
    really = [k for k in missing if where(current[k]) not in loaded]
    if really:
        raise EnsembleError(f"{directory / WEIGHTS}: checkpoint lacks weights {really[:3]}; it does not match the base")
    return pooler


def export(out: Path, mlm, tokenizer, pooler_sd: dict, provenance: dict[str, Any]) -> None:
    """Write the encoder directory: files staged aside, then renamed into ``out``."""
    staging = out / ".export.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    state = {k: v.detach().contiguous().cpu() for k, v in mlm.state_dict().items()}
    state.update(pooler_sd)
    with quiet_transformers():
        mlm.save_pretrained(str(staging), state_dict=state)
        tokenizer.save_pretrained(str(staging))
    (staging / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    refuse_pickles(staging)
    files = sorted(p for p in staging.iterdir() if p.is_file() and p.name != PROVENANCE_FILE)
    if (out / PROVENANCE_FILE).exists():  # the directory is incomplete until the provenance is back
        (out / PROVENANCE_FILE).unlink()
    for p in files + [staging / PROVENANCE_FILE]:
        os.replace(p, out / p.name)
    shutil.rmtree(staging)
