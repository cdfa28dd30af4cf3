"""The issue's speed and accuracy targets, each reported as ``value``, ``target`` and ``met``."""
from __future__ import annotations

from typing import Any

from .accuracy import BF16_MIN_AGREEMENT, FP32_TOLERANCE

TOKENISED_ONCE = "ensemble predict_encoded, tokenised once"

PEAK_TARGET = 0.85        # of the measured matmul peak, SST dev, fp32 and bf16
CUDA_PEAK_TARGET = 0.40   # bf16 on CUDA, a BERT-base-sized model
SPEEDUP_TARGET = 5.0      # over transformers.pipeline with its defaults, SST dev
SMART_TARGET = 2.5        # SMART step / plain step


def target(value: float | None, goal: float, at_least: bool = True) -> dict[str, Any]:
    """``value`` against ``goal`` (``>=`` where ``at_least``, else ``<=``); ``met`` is None without a value."""
    met = None if value is None else (value >= goal if at_least else value <= goal)
    return {"value": value, "target": f"{'>=' if at_least else '<='} {goal:g}", "met": met}


def inference_targets(rows: list[dict[str, Any]], accuracy: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """The issue's inference targets on SST dev, each as ``value``, ``target`` and ``met``; on CUDA
    also bf16 at 40% of the matmul peak (the best input, tokens cached: the GPU's work alone)."""
    def tool(precision: str) -> dict[str, Any] | None:
        return next((r for r in rows if r["input"] == "sst dev" and r["system"] == "ensemble predict_encoded"
                     and r["precision"] == precision), None)
    out: dict[str, Any] = {}
    for p in ("fp32", "bf16"):
        r = tool(p)
        if r is not None:
            out[f"sst {p} fraction of matmul peak"] = target(r["peak_fraction"], PEAK_TARGET)
    if tool("fp32") is not None:
        out["sst fp32 speed-up over pipeline defaults"] = target(tool("fp32")["speedup"], SPEEDUP_TARGET)
    acc = accuracy.get("sst", {})
    if "fp32_max_abs_diff_unbatched" in acc:
        out["sst fp32 max abs diff vs unbatched"] = target(acc["fp32_max_abs_diff_unbatched"], FP32_TOLERANCE, False)
    if "bf16_agreement" in acc:
        out["sst bf16 argmax agreement with fp32"] = target(acc["bf16_agreement"], BF16_MIN_AGREEMENT)
    cuda = [r for r in rows if r["system"] == TOKENISED_ONCE and r["precision"] == "bf16"]
    if device.startswith("cuda") and cuda:
        out["CUDA bf16 fraction of matmul peak, tokenised once"] = target(max(r["peak_fraction"] for r in cuda),
                                                                         CUDA_PEAK_TARGET)
    return out


def train_targets(tool_vs_plain: float, smart_overhead: float, floor_ratio: float) -> dict[str, Any]:
    """The issue's training targets: the tool's tokens/s at least the plain loop's, and a SMART step
    (measured, and its least possible cost) at most 2.5 plain steps."""
    return {"tool tokens/s vs plain loop": target(tool_vs_plain, 1.0),
            "SMART step / plain step": target(smart_overhead, SMART_TARGET, False),
            "SMART step / plain step, least possible (smart_floor)": target(floor_ratio, SMART_TARGET, False)}
