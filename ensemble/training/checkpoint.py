"""A training run's per-epoch checkpoint (``train --resume``): everything needed to continue from
the last completed epoch and end bit for bit where an uninterrupted run ends (on a CPU).

``<folder>/`` (``<registry>/runs/<run_id>/checkpoint/``, see :mod:`ensemble.registry.runs`) holds::

    model.safetensors       the model's weights
    optimizer.safetensors   AdamW's state tensors (``<param index>.<name>``) and the RNG states'
                            tensors (``rng.torch``, ``rng.cuda.<i>``, ``rng.numpy``, ``rng.smart``,
                            ``scaler.<name>``)
    state.json              the rest: the optimizer's scalar state, the RNGs' scalars, the loss
                            scaler's scalars and, under "loop", the training loop's
                            :class:`LoopState` (epoch, optimizer step, best scores, early
                            stopping's count, the record's epochs so far)

No pickle: torch's optimizer state dict is flattened to tensors plus JSON. A checkpoint is written
into ``<folder>.new`` and swapped in by renames (``<folder>`` -> ``<folder>.old``, ``.new`` ->
``<folder>``), so a kill at any moment leaves the previous checkpoint or the new one; reading
takes ``<folder>.old`` when the kill fell between the two renames (:func:`find`, torch-free in
:mod:`ensemble.training.loop_state` with :class:`LoopState` and :func:`read_loop`). safetensors files carry one
metadata key, so the same tensors give the same bytes (a header with several keys is written in
a random order).
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from ..errors import EnsembleError
from ..files import fault_point
from ..modeling.model import save_tensors

from .loop_state import OPTIMIZER, STATE, WEIGHTS, LoopState, find, read_loop  # noqa: F401  (the checkpoint's names)


# -- optimizer state -----------------------------------------------------------------------------
def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """The optimizer's per-parameter state as tensors ``<index>.<name>`` and the scalars beside them."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in optimizer.state_dict()["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{idx}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, scalars


def restore_optimizer(optimizer: torch.optim.Optimizer, flat: dict[str, torch.Tensor], scalars: dict[str, Any],
                      where: Path) -> None:
    """Load the state written by :func:`optimizer_tensors` (``flat`` may hold other keys, with a
    dot-free or non-numeric first part, which are skipped); the groups stay the optimizer's own."""
    state: dict[int, dict[str, Any]] = {}
    for key, v in flat.items():
        idx, _, name = key.partition(".")
        if idx.isdigit():
            state.setdefault(int(idx), {})[name] = v
    for idx, st in scalars.items():
        state.setdefault(int(idx), {}).update(st)
    current = optimizer.state_dict()
    n_params = sum(len(g["params"]) for g in current["param_groups"])
    if any(i >= n_params for i in state):
        raise EnsembleError(f"{where}: optimizer state does not match the model (more parameters saved)")
    optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})


# -- random number generators --------------------------------------------------------------------
def rng_state(smart: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every RNG the training loop draws from: python's, numpy's, torch's (CPU, each CUDA device)
    and SMART's noise generator; tensors and JSON scalars."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {"rng.torch": torch.get_rng_state(), "rng.smart": smart.get_state(),
               "rng.numpy": torch.from_numpy(np.asarray(keys, dtype=np.int64))}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    py = random.getstate()
    return tensors, {"python": [py[0], list(py[1]), py[2]], "numpy": [kind, int(pos), int(has_gauss), float(cached)]}


def set_rng_state(smart: torch.Generator, tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    smart.set_state(tensors["rng.smart"])
    kind, pos, has_gauss, cached = scalars["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k[9:]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    version, internal, gauss = scalars["python"]
    random.setstate((version, tuple(internal), gauss))


# -- the folder ----------------------------------------------------------------------------------
def write(folder: Path, model: torch.nn.Module, optimizer, smart: torch.Generator, scaler, loop: LoopState) -> None:
    """The checkpoint of a completed epoch: written beside ``folder``, swapped in by renames."""
    folder = Path(folder)
    new, old = folder.with_name(folder.name + ".new"), folder.with_name(folder.name + ".old")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    save_tensors(model.state_dict(), new / WEIGHTS)
    opt, opt_scalars = optimizer_tensors(optimizer)
    rng, rng_scalars = rng_state(smart)
    scaler_state = scaler.state_dict() if scaler is not None and scaler.is_enabled() else {}
    scaler_tensors = {f"scaler.{k}": v for k, v in scaler_state.items() if isinstance(v, torch.Tensor)}
    save_tensors({**opt, **rng, **scaler_tensors}, new / OPTIMIZER)
    state = {"loop": loop.to_dict(), "optimizer_scalars": opt_scalars, "rng": rng_scalars,
             "scaler": {k: v for k, v in scaler_state.items() if not isinstance(v, torch.Tensor)}}
    (new / STATE).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    fault_point("train.checkpoint.swap")
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(folder, old)
    fault_point("train.checkpoint.swap.in")
    os.rename(new, folder)
    shutil.rmtree(old, ignore_errors=True)


def restore(folder: Path, model: torch.nn.Module, optimizer, smart: torch.Generator, scaler) -> LoopState:
    """Load weights, optimizer, RNGs and loss scaler from :func:`find`'s folder; returns the loop's state."""
    folder = Path(folder)
    state = json.loads((folder / STATE).read_text())
    weights = load_file(str(folder / WEIGHTS), device="cpu")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise EnsembleError(f"{folder / WEIGHTS}: weights do not match the model (missing {missing[:2]}, "
                            f"unexpected {unexpected[:2]})")
    flat = load_file(str(folder / OPTIMIZER), device="cpu")
    restore_optimizer(optimizer, flat, state["optimizer_scalars"], folder)
    if scaler is not None and scaler.is_enabled() and state.get("scaler"):
        scaler.load_state_dict({**state["scaler"], **{k[7:]: v for k, v in flat.items() if k.startswith("scaler.")}})
    set_rng_state(smart, flat, state["rng"])
    return LoopState.from_dict(state.get("loop"), folder / STATE)


def remove(folder: Path) -> None:
    folder = Path(folder)
    for d in (folder, folder.with_name(folder.name + ".old"), folder.with_name(folder.name + ".new")):
        shutil.rmtree(d, ignore_errors=True)
