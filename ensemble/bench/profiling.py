"""Where the time goes: useful FLOPs counted analytically (:func:`model_flops`) and one call
under ``torch.profiler`` with its linear-layer matmuls summed apart (:func:`profile_ops`)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from ..modeling.model import MultitaskModel
from .machine import sync

LINEAR_OPS = ("mkldnn::_linear_pointwise", "aten::addmm", "aten::mm")   # the matmul kernels themselves


def model_flops(model: MultitaskModel, task: str, lengths, attention: bool = True) -> float:
    """Useful FLOPs of ``model`` on sequences of the given (real, unpadded) lengths for ``task``.

    Per encoder layer and sequence of length L: ``2 L (4 H^2 + 2 H I)`` for the Q, K, V, output and
    the two feed-forward projections, plus ``2 * 2 L^2 H`` for the attention scores and the
    weighted values. Per sequence and stream: the pooler (``2 H^2``); then the head
    (``2 * in * out``). Embedding look-ups, LayerNorm, softmax, GELU and biases are not counted.
    ``attention=False``: the linear layers' FLOPs only (the attention products left out).
    """
    cfg = model.encoder_config
    h, i = cfg.hidden_size, cfg.intermediate_size
    lengths = np.asarray(lengths, dtype=np.float64)
    n = len(lengths)
    per_layer = float(np.sum(2 * lengths * (4 * h * h + 2 * h * i) + (4 * lengths ** 2 * h if attention else 0)))
    total = 0.0
    for _, stack_keys, pooler_key in model.streams[task]:
        layers = sum(len(model.stacks[k]) for k in stack_keys)
        total += layers * per_layer
        if any(True for _ in model.poolers[pooler_key].parameters()):
            total += n * 2 * h * h
    head = model.heads[task][-1]
    total += n * 2 * head.in_features * head.out_features
    return total


def is_linear_op(name: str, device: torch.device) -> bool:
    """Whether a profiler row is a linear layer's matmul: on a CPU the ATen/oneDNN linear ops, on
    CUDA the GEMM kernels (cuBLAS/CUTLASS names)."""
    if device.type == "cuda":
        low = name.lower()
        return ("gemm" in low or "cutlass" in low) and "fmha" not in low and "flash" not in low
    return name in LINEAR_OPS


def profile_ops(fn: Callable[[], Any], device: torch.device,
                top: int = 8) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Where one call of ``fn`` spends its time, as ``(ops, linear)``: ``ops`` the ``top``
    operators by self time (CPU time on a CPU, device time on CUDA), each with ``op``, ``calls``,
    ``ms``, ``share`` of the total and ``linear`` (:func:`is_linear_op`), then one ``other`` row for
    the rest (the shares sum to 1); ``linear`` all linear-layer matmuls together, in the same keys."""
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        sync(device)
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, attr, 0) > 0]
    total = sum(getattr(e, attr) for e in events) or 1.0
    events.sort(key=lambda e: getattr(e, attr), reverse=True)
    out = [{"op": e.key, "calls": int(e.count), "ms": getattr(e, attr) / 1000, "share": getattr(e, attr) / total,
            "linear": is_linear_op(e.key, device)} for e in events[:top]]
    rest = sum(getattr(e, attr) for e in events[top:])
    out.append({"op": "other", "calls": sum(int(e.count) for e in events[top:]), "ms": rest / 1000,
                "share": rest / total, "linear": False})
    lin = [e for e in events if is_linear_op(e.key, device)]
    lin_us = sum(getattr(e, attr) for e in lin)
    return out, {"op": "linear layers", "calls": sum(int(e.count) for e in lin), "ms": lin_us / 1000,
                 "share": lin_us / total, "linear": True}


def inference_profile(fn: Callable[[], Any], device: torch.device, linear_flops: float) -> dict[str, Any]:
    """One untimed call of ``fn`` under the profiler: ``total_ms``, ``share`` per top operator (then
    ``other``), ``linear_ms``/``linear_share`` of all linear-layer matmuls and ``linear_gflop``,
    their FLOPs (``linear_flops``)."""
    ops, lin = profile_ops(fn, device)
    return {"total_ms": sum(o["ms"] for o in ops), "share": {o["op"]: o["share"] for o in ops},
            "linear_ms": lin["ms"], "linear_share": lin["share"], "linear_gflop": linear_flops / 1e9}


def linear_rate(prof: dict[str, Any], peak_gflops: float) -> None:
    """Add to an :func:`inference_profile` the linear layers' own rate (``linear_gflops``: their
    FLOPs over their profiled time) and ``linear_peak_fraction``, that rate against the matmul peak:
    how much of the gap to the peak is the matmuls' and how much the rest's."""
    rate = prof["linear_gflop"] / (prof["linear_ms"] / 1000) if prof["linear_ms"] else float("nan")
    prof["linear_gflops"] = rate
    prof["linear_peak_fraction"] = rate / peak_gflops
