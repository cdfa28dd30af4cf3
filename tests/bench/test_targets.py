"""ensemble.bench.targets: the CUDA target reads the tokenised-once rows, on CUDA only."""
from __future__ import annotations

from ensemble.bench.targets import TOKENISED_ONCE, inference_targets


def test_cuda_target_only_on_cuda_from_the_tokenised_once_rows():
    def row(system, precision, frac):
        return {"input": "para dev", "system": system, "precision": precision, "peak_fraction": frac}
    rows = [row(TOKENISED_ONCE, "bf16", 0.45), row(TOKENISED_ONCE, "bf16", 0.30),
            row("ensemble predict_encoded", "bf16", 0.90), row(TOKENISED_ONCE, "fp32", 0.95)]
    t = inference_targets(rows, {}, "cuda:0")["CUDA bf16 fraction of matmul peak, tokenised once"]
    assert t == {"value": 0.45, "target": ">= 0.4", "met": True}
    assert inference_targets(rows, {}, "cpu") == {}
