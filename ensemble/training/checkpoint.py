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

from ..errors import EnsembleError
from ..files import fault_point
from ..modeling.model import load_tensors, save_tensors

from .loop_state import OPTIMIZER, STATE, WEIGHTS, LoopState, check_folder, find, read_loop, read_state  # noqa: F401


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
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if any(i >= len(params) for i in state):
        raise EnsembleError(f"{where}: optimizer state does not match the model (more parameters saved)")
    for i, st in state.items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape != params[i].shape:
                raise EnsembleError(f"{where}: optimizer state {i}.{name} has shape {list(v.shape)}, expected "
                                    f"{list(params[i].shape)} (its parameter's); the checkpoint does not match the model")
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


RNG_TENSORS = ("rng.torch", "rng.smart", "rng.numpy")


def _rng_tensors_problem(tensors: dict[str, torch.Tensor]) -> str | None:
    """Why the RNG tensors of a checkpoint cannot be set (missing, of another type or size), else None."""
    want = {"rng.torch": (torch.uint8, torch.get_rng_state().shape), "rng.smart": (torch.uint8, torch.get_rng_state().shape),
            "rng.numpy": (torch.int64, torch.Size([624]))}
    for key, (dtype, shape) in want.items():
        t = tensors.get(key)
        if t is None:
            return f"tensor {key}: missing (the random number generators' state)"
        if t.dtype != dtype or t.shape != shape:
            return f"tensor {key}: {t.dtype} of shape {list(t.shape)}, expected {dtype} of shape {list(shape)}"
    return None


def set_rng_state(smart: torch.Generator, tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
    """Set every RNG from a checkpoint (its state checked by :class:`ensemble.documents.Rng` and
    :func:`_rng_tensors_problem` first)."""
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
    check_folder(folder)
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
    """Load weights, optimizer, RNGs and loss scaler from :func:`find`'s folder; returns the loop's state.
    Every file is checked before anything is loaded into the model."""
    folder = Path(folder)
    state = read_state(folder)
    weights = load_tensors(folder / WEIGHTS)
    flat = load_tensors(folder / OPTIMIZER)
    problem = _rng_tensors_problem(flat)
    if problem:
        raise EnsembleError(f"{folder / OPTIMIZER}: {problem}; the checkpoint is damaged")
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as e:   # a tensor of another shape
        raise EnsembleError(f"{folder / WEIGHTS}: weights do not match the model ({str(e).splitlines()[-1].strip()})") from None
    if missing or unexpected:
        raise EnsembleError(f"{folder / WEIGHTS}: weights do not match the model (missing {missing[:2]}, "
                            f"unexpected {unexpected[:2]})")
    restore_optimizer(optimizer, flat, state["optimizer_scalars"], folder / OPTIMIZER)
    if scaler is not None and scaler.is_enabled() and state.get("scaler"):
        scaler.load_state_dict({**state["scaler"], **{k[7:]: v for k, v in flat.items() if k.startswith("scaler.")}})
    set_rng_state(smart, flat, state["rng"])
    return LoopState.from_dict(state.get("loop"), folder / STATE)


def remove(folder: Path) -> None:
    folder = Path(folder)
    for d in (folder, folder.with_name(folder.name + ".old"), folder.with_name(folder.name + ".new")):
        shutil.rmtree(d, ignore_errors=True)
