"""``bench train``'s rows for the training options: bf16 autocast (on a CPU with bf16 instructions,
or CUDA), gradient accumulation and gradient checkpointing, each against the plain fp32 step of
the same architecture, on the same batches; and ``multi+triple`` with and without checkpointing.

Tokens per second are measured in one process, the systems interleaved step by step (as
:mod:`ensemble.bench.training` does), so a change of load hits all alike. Peak memory: on CUDA
``torch.cuda.max_memory_allocated`` over each system's steps; on a CPU each system runs its steps
alone in a fresh process, whose peak resident memory (``VmHWM``, reset through
``/proc/self/clear_refs`` once the model is built) less its resident memory at that moment is what
the steps added: activations kept for the backward pass, gradients, AdamW's state.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from ..modeling.bases import load_base, quiet_transformers, resolve_base
from ..data import read_split
from ..modeling.infer import cpu_has_bf16, pick_device
from ..modeling.config import ModelConfig
from ..modeling.model import MultitaskModel
from ..progress import NULL
from ..tasks import TASK_NAMES, get_task
from ..training.config import TrainConfig
from ..training.finetune import Stepper, make_optimizer, training_step
from .machine import machine_facts, sync, torch_threads
from .training import _interleave, _train_batches


def variants(arch_both: bool, bf16: bool, accum: int) -> list[dict[str, Any]]:
    """The systems: name, architecture, precision, grad_accum, checkpointing, and the row it is against."""
    plain = {"architecture": "multi", "precision": "fp32", "grad_accum": 1, "ckpt": False, "against": "plain step"}
    rows = [{"name": "plain step", **plain}]
    if bf16:
        rows.append({**plain, "name": "bf16 autocast", "precision": "bf16"})
    rows.append({**plain, "name": f"gradient accumulation x{accum}", "grad_accum": accum})
    rows.append({**plain, "name": "gradient checkpointing", "ckpt": True})
    if arch_both:
        mt = {**plain, "architecture": "multi+triple", "against": "multi+triple plain"}
        rows += [{**mt, "name": "multi+triple plain"}, {**mt, "name": "multi+triple + gradient checkpointing",
                                                        "ckpt": True}]
    return rows


def _system(v: dict[str, Any], base_path: str, base: str, dev: torch.device, seed: int):
    """A fresh model and the tool's optimizer for variant ``v``; a step function over one batch."""
    torch.manual_seed(seed)
    cfg = TrainConfig(base=base, architecture=v["architecture"], grad_accum=v["grad_accum"],
                      gradient_checkpointing=v["ckpt"], seed=seed)
    bm, _ = load_base(base_path, cfg.hidden_dropout)
    model = MultitaskModel.from_base(ModelConfig(v["architecture"], TASK_NAMES, base=base), bm).to(dev).train()
    model.set_gradient_checkpointing(v["ckpt"])
    stepper = Stepper(make_optimizer(model, cfg), cfg, 10 ** 6)
    gen = torch.Generator().manual_seed(seed)
    count = [0]

    def step(batch):
        total, _ = training_step(model, batch, cfg.smart, dev, v["precision"], gen)
        stepper.backward(total / cfg.grad_accum if cfg.grad_accum > 1 else total)
        count[0] += 1
        if count[0] % cfg.grad_accum == 0:
            stepper()
    return step


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def memory_child(spec_json: str) -> None:
    """Run in a fresh process: one variant's steps; prints the memory they added (bytes) as JSON."""
    spec = json.loads(spec_json)
    torch.set_num_threads(spec["threads"] or torch.get_num_threads())
    dev = torch.device("cpu")
    with quiet_transformers():
        base_path = resolve_base(spec["base"])
        _, tokenizer = load_base(base_path, 0.1)
        batches = _train_batches(read_split(Path(spec["data"]), spec["task"], "train"), tokenizer, spec["batch_size"],
                                 spec["n"], spec["seed"])
        step = _system(spec["variant"], base_path, spec["base"], dev, spec["seed"])
    Path("/proc/self/clear_refs").write_text("5")     # the peak starts again from what is resident now
    before = _status_kb("VmRSS")
    for b in batches:
        step(b)
    print(json.dumps({"peak_added_bytes": 1024 * (_status_kb("VmHWM") - before)}))


def _cpu_peak(spec: dict[str, Any]) -> int | None:
    """:func:`memory_child` in a subprocess; None where /proc cannot tell (not Linux)."""
    if not Path("/proc/self/clear_refs").exists():
        return None
    code = "import sys; from ensemble.bench.training_options import memory_child; memory_child(sys.argv[1])"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[2]),
                                                                   os.environ.get("PYTHONPATH", "")) if p))
    r = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True, env=env,
                       timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"memory measurement of {spec['variant']['name']} failed:\n{r.stderr[-2000:]}")
    return int(json.loads(r.stdout.strip().splitlines()[-1])["peak_added_bytes"])


def _cuda_peaks(systems: dict, batches, dev: torch.device) -> dict[str, int]:
    peaks = {}
    for name, step in systems.items():
        sync(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        start = torch.cuda.memory_allocated(dev)
        for b in batches:
            step(b.to(dev))
        sync(dev)
        peaks[name] = torch.cuda.max_memory_allocated(dev) - start
    return peaks


def bench_train_options(base: str = "minilm", data_dir: str | Path = "data", steps: int = 8, batch_size: int = 16,
                        task: str = "sst", accum: int = 2, warmup: int = 2, device: str | None = None,
                        threads: int | None = None, seed: int = 0, multi_triple: bool = True,
                        progress=None) -> dict[str, Any]:
    """Rows ``option``, ``architecture``, ``precision``, ``tokens_per_s``, ``vs_plain`` (tokens/s
    over the plain step of the same architecture), ``peak_mb`` and ``peak_vs_plain`` over the same
    ``warmup + steps`` batches of ``task``."""
    get_task(task)
    progress = progress or NULL
    dev = pick_device(device)
    bf16 = dev.type == "cuda" or cpu_has_bf16()
    vs = variants(multi_triple, bf16, accum)
    with torch_threads(threads), quiet_transformers():
        base_path = resolve_base(base)
        _, tokenizer = load_base(base_path, 0.1)
        batches = _train_batches(read_split(Path(data_dir), task, "train"), tokenizer, batch_size, warmup + steps, seed)
        systems = {v["name"]: _system(v, base_path, base, dev, seed) for v in vs}
        times = _interleave(systems, lambda b, rec: None, batches, warmup, dev, progress,
                            f"training options ({task}, batch {batch_size})")
        if dev.type == "cuda":
            peaks = _cuda_peaks(systems, batches, dev)
        del systems
        machine = machine_facts(dev)
    if dev.type != "cuda":
        spec = {"base": base, "data": str(data_dir), "task": task, "batch_size": batch_size, "n": warmup + steps,
                "seed": seed, "threads": threads}
        peaks = {v["name"]: _cpu_peak({**spec, "variant": v}) for v in vs}
    return {"title": f"training options: {base} on {machine['device']}, {task}, batch {batch_size}, {steps} timed steps",
            "rows": _rows(vs, times, peaks, sum(b.n_tokens for b in batches[warmup:])),
            "memory": "CUDA max_memory_allocated over the steps" if dev.type == "cuda" else
                      "peak resident memory the steps added, each option alone in a fresh process (VmHWM)",
            "machine": machine}


def _rows(vs: list[dict[str, Any]], times: dict[str, list[float]], peaks: dict[str, int | None],
          tokens: int) -> list[dict[str, Any]]:
    tps = {v["name"]: tokens / sum(times[v["name"]]) for v in vs}
    rows = []
    for v in vs:
        name, ref = v["name"], v["against"]
        peak, ref_peak = peaks.get(name), peaks.get(ref)
        rows.append({"option": name, "architecture": v["architecture"], "precision": v["precision"],
                     "tokens_per_s": tps[name], "vs_plain": tps[name] / tps[ref],
                     "peak_mb": None if peak is None else peak / 2 ** 20,
                     "peak_vs_plain": None if not peak or not ref_peak else peak / ref_peak, "against": ref})
    return rows

