"""Probes of the machine a benchmark runs on: the dense matmul rate, peak memory, thread count,
CPU/GPU facts and load, and the clock (CUDA synchronised before every read)."""
from __future__ import annotations

import ctypes
import gc
import os
import platform
import re
import resource
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import torch
import transformers

from ..modeling.infer import cpu_has_bf16
from ..modeling.kernels import onednn_linear_ops


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], repeats: int, device: torch.device) -> tuple[list[float], Any]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` (at least one) and the last call's result."""
    times, result = [], None
    for _ in range(max(1, repeats)):
        sync(device)
        t0 = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times, result


def matmul_peak(device: torch.device | str = "cpu", precision: str = "fp32", sizes: tuple[int, ...] = (1024, 2048),
                repeats: int = 5) -> dict[str, Any]:
    """Dense matmul rate of the machine: n x n by n x n products, best of ``repeats`` per size, best
    over the sizes (``gflops`` = 2 n^3 / seconds / 1e9).

    Two ways are timed where they exist: ``torch.matmul`` (on a CPU: MKL's sgemm for fp32, oneDNN
    for bf16; on CUDA: cuBLAS), and on a CPU oneDNN's matmul on a pre-packed weight (the kernel
    :func:`ensemble.modeling.kernels.packed_linears` uses; on AMD CPUs MKL's fp32 sgemm reaches only about
    half of it). ``gflops`` is the better of the two: the machine's rate, not one library's.

    Returns ``gflops``, ``n``, ``seconds``, ``method`` (of the best), ``torch_matmul_gflops`` and
    ``onednn_gflops`` (None where not measured).
    """
    device = torch.device(device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    gen = torch.Generator().manual_seed(0)
    ops = onednn_linear_ops() if device.type == "cpu" and precision in ("fp32", "bf16") else None
    rates: dict[str, tuple[float, int, float]] = {}

    def timeit(method: str, fn, n: int) -> None:
        fn()  # warm up (thread pool, kernels, GPU clocks)
        for dt in time_calls(fn, repeats, device)[0]:
            rate = 2 * n ** 3 / dt / 1e9
            if rate > rates.get(method, (0.0, 0, 0.0))[0]:
                rates[method] = (rate, n, dt)

    with torch.inference_mode():
        for n in sizes:
            a = torch.randn(n, n, generator=gen).to(device, dtype)
            b = torch.randn(n, n, generator=gen).to(device, dtype)
            timeit("torch.matmul", lambda: torch.matmul(a, b), n)
            if ops is not None:
                try:
                    packed = ops[0](b, None)
                    timeit("oneDNN packed matmul", lambda: ops[1](a, packed, None, "none", [], ""), n)
                except RuntimeError:  # pragma: no cover - build without the op for this dtype
                    pass
            del a, b
    method = max(rates, key=lambda k: rates[k][0])
    best = rates[method]
    return {"gflops": best[0], "n": best[1], "seconds": best[2], "method": method,
            "torch_matmul_gflops": rates["torch.matmul"][0],
            "onednn_gflops": rates["oneDNN packed matmul"][0] if "oneDNN packed matmul" in rates else None}


def _read_kib(field: str) -> int | None:
    try:
        m = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def _malloc_trim() -> bool:
    """Give freed heap memory back to the OS (glibc), so that RSS is what is in use now."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def _reset_peak_rss() -> bool:
    """Reset the process's RSS high-water mark (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _read_kib("VmHWM") is not None
    except OSError:
        return False


class PeakMemory:
    """Peak memory while the block runs, in MiB (``peak_mib``), and above what was in use when it
    started (``extra_mib``).

    CUDA: ``torch.cuda.max_memory_allocated`` (reset at entry). CPU: the process's peak resident set
    size, ``VmHWM`` of /proc/self/status, reset at entry by writing 5 to /proc/self/clear_refs
    (Linux) after ``malloc_trim(0)`` has handed freed heap pages back (glibc), so that memory an
    earlier run freed but the allocator kept does not hide this run's needs; where that reset is
    impossible, ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the peak since the process started
    (``method`` says which). ``peak_mib`` includes the loaded models and the Python process.
    """

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.peak_mib: float | None = None
        self.extra_mib: float | None = None
        self.method = ""

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            self.method = "torch.cuda.max_memory_allocated (reset per run)"
            return self
        trimmed = _malloc_trim()
        reset = _reset_peak_rss()
        self._start = (_read_kib("VmRSS") or 0) * 1024
        if reset:
            self.method = ("peak RSS: VmHWM of /proc/self/status, reset per run via /proc/self/clear_refs"
                           + (" after malloc_trim(0)" if trimmed else ""))
        else:
            self.method = "peak RSS: resource.getrusage ru_maxrss (process lifetime peak, not reset per run)"
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif "VmHWM" in self.method:
            peak = (_read_kib("VmHWM") or 0) * 1024
        else:
            ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak = ru if platform.system() == "Darwin" else ru * 1024
        self.peak_mib = peak / 2 ** 20
        self.extra_mib = max(0.0, (peak - self._start) / 2 ** 20)


@contextmanager
def torch_threads(n: int | None):
    """``torch.set_num_threads(n)`` while inside (nothing for ``None``/0), restored on exit."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def machine_facts(device: torch.device) -> dict[str, Any]:
    """The device, library versions, threads, CPU count and the CPU's or GPU's name."""
    d: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
                         "cpu_count": os.cpu_count(), "transformers": transformers.__version__}
    if device.type == "cuda":
        d["gpu"] = torch.cuda.get_device_name(device)
    else:
        d["cpu_bf16"] = cpu_has_bf16()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    d["cpu"] = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    return d


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, rounded to 2 places."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None
