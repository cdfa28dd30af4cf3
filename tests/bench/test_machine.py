"""ensemble.bench.machine: the matmul rate and the peak-memory probe report what they claim."""
from __future__ import annotations

import numpy as np
import torch

from ensemble.bench.machine import PeakMemory, matmul_peak


def test_matmul_peak_and_memory():
    r = matmul_peak("cpu", "fp32", sizes=(64, 128), repeats=2)
    assert set(r) == {"gflops", "n", "seconds", "method", "torch_matmul_gflops", "onednn_gflops"}
    assert r["gflops"] > 0 and r["n"] in (64, 128)
    assert r["gflops"] == max(r["torch_matmul_gflops"], r["onednn_gflops"] or 0)
    with PeakMemory(torch.device("cpu")) as mem:
        x = np.ones(20_000_000)  # 160 MB
        x[::4096] = 2
    del x
    assert mem.method
    assert mem.peak_mib > 0
    if "VmHWM" in mem.method:        # resettable high-water mark: the allocation shows up as extra
        assert mem.extra_mib > 100
