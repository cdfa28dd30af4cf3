"""A training step of the tool (:func:`ensemble.training.finetune.training_step` with the optimizer that
:func:`ensemble.training.finetune.train` builds), plain and with SMART, against a plain transformers loop
(``AutoModelForSequenceClassification`` + ``torch.optim.AdamW``) on the very same batches,
interleaved step by step so that a change of machine load hits every system alike."""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification

from ..modeling.bases import load_base, quiet_transformers, resolve_base
from ..modeling.batches import Batch, encode, max_length_for, training_batches
from ..data import read_split
from ..errors import EnsembleError
from ..modeling.infer import autocast, check_precision, pick_device
from ..modeling.config import ModelConfig
from ..modeling.model import MultitaskModel, task_loss
from ..progress import NULL
from ..tasks import TASK_NAMES, TASKS, get_task
from ..training.config import TrainConfig
from ..training.finetune import make_optimizer, param_groups, training_step
from .machine import load_average, machine_facts, sync, torch_threads
from .targets import train_targets

PHASES = ("forward_ms", "input_backward_ms", "backward_ms", "optimizer_ms")


def smart_floor(phase_ms: dict[str, float], steps: int = 1) -> dict[str, Any]:
    """The least a SMART step can cost against a plain one, from the plain step's measured phases.

    A plain step is a forward ``F``, a backward ``B`` and an optimizer step ``O``. A SMART step
    (:mod:`ensemble.training.smart`) does the clean forward, then per ascent step a forward on the noised
    embeddings and a backward to the noise only (``B_in``: input gradients, no weight gradients),
    then the adversarial forward, one backward through both the clean and the adversarial graph,
    and the same optimizer step::

        floor = (F + steps * (F + B_in) + F + 2 B + O) / (F + B + O)

    with ``F``, ``B_in``, ``B``, ``O`` the medians of ``phase_ms`` (the embedding lookup is counted
    in ``F``; the divergences and the noise are not counted). A measured SMART overhead near the
    floor means there is no waste left in the implementation; below it is impossible for this
    method.
    """
    f, b_in, b, o = (phase_ms[k] for k in PHASES)
    plain = f + b + o
    floor = (f + steps * (f + b_in) + f + 2 * b + o) / plain if plain > 0 else float("nan")
    return {**{k: phase_ms[k] for k in PHASES}, "ascent_steps": steps, "floor_ratio": floor,
            "formula": "(F + steps*(F + B_in) + F + 2B + O) / (F + B + O)"}


def _optimizer_step_ms(base_path: str, cfg: TrainConfig, device: torch.device, steps: int = 5) -> dict[str, float]:
    """Median AdamW step (ms) over the tool's parameter groups: as ``train`` builds it, and fused."""
    bm, _ = load_base(base_path, cfg.hidden_dropout)
    m = MultitaskModel.from_base(ModelConfig("multi", TASK_NAMES, base=cfg.base), bm).to(device)
    gen = torch.Generator().manual_seed(0)
    for p in m.parameters():
        p.grad = torch.randn(p.shape, generator=gen).to(device)
    out = {}
    for label, kw in (("per-tensor loop (torch default)", {"fused": False}), ("fused (as train builds it)", {"fused": True})):
        try:
            opt = torch.optim.AdamW([{k: v for k, v in g.items() if k != "names"} for g in param_groups(m, cfg)],
                                    lr=cfg.lr, weight_decay=cfg.weight_decay, **kw)
        except RuntimeError:  # pragma: no cover - no fused kernel on this device
            continue
        ts = []
        for _ in range(steps + 1):
            sync(device)
            t0 = time.perf_counter()
            opt.step()
            sync(device)
            ts.append(time.perf_counter() - t0)
        out[label] = 1000 * statistics.median(ts[1:])
    return out


def _train_batches(split, tokenizer, batch_size: int, n_batches: int, seed: int) -> list[Batch]:
    """``n_batches`` training batches of a train split (its first rows, cycled if short)."""
    task = split.task
    split.examples = split.examples[: max(n_batches * batch_size * 4, batch_size)]
    enc = encode(tokenizer, split, max_length_for(tokenizer, None), both_orders=TASKS[task].pair)
    batches = training_batches(enc, batch_size, np.random.default_rng(seed))
    if not batches:
        raise EnsembleError(f"{task} train file has no rows")
    return [batches[i % len(batches)] for i in range(n_batches)]


def _tool_model(base_path: str, base: str, tc: TrainConfig, dev: torch.device, seed: int):
    """A fresh tool model from the base weights, in train mode, with the optimizer ``train`` builds."""
    torch.manual_seed(seed)
    bm, _ = load_base(base_path, tc.hidden_dropout)
    m = MultitaskModel.from_base(ModelConfig("multi", TASK_NAMES, 0, tc.head_dropout, base=base), bm).to(dev)
    return m.train(), make_optimizer(m, tc)


def _tool_system(model_opt, tc: TrainConfig, dev: torch.device, prec: str, seed: int) -> Callable[[Batch], None]:
    m, opt = model_opt
    gen = torch.Generator().manual_seed(seed)

    def step(batch):
        total, _ = training_step(m, batch, tc.smart, dev, prec, gen)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
    return step


def _plain_system(base_path: str, task: str, cfg: TrainConfig, dev: torch.device, prec: str,
                  seed: int) -> Callable[[Batch], None]:
    """The plain transformers loop: ``AutoModelForSequenceClassification`` and one AdamW group."""
    torch.manual_seed(seed)
    clf = AutoModelForSequenceClassification.from_pretrained(
        base_path, num_labels=TASKS[task].n_outputs, attn_implementation="sdpa", use_safetensors=True,
        hidden_dropout_prob=cfg.hidden_dropout).to(dev)
    opt = torch.optim.AdamW(clf.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=dev.type == "cuda")
    clf.train()

    def step(batch):
        with autocast(dev, prec):
            logits = clf(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                         token_type_ids=batch.token_type_ids).logits
            loss = task_loss(task, logits, batch.labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def _phase_system(model_opt, task: str, dev: torch.device, prec: str, phases: dict[str, list[float]]):
    """The tool's plain step cut into its phases (see :func:`smart_floor`), each timed apart; a
    recorded step appends its phase times to ``phases``. Not :func:`ensemble.training.finetune.training_step`:
    the clock is read between the forward, the input backward, the backward and the optimizer step."""
    m, opt = model_opt

    def step(batch, record: bool):
        clock = [time.perf_counter()]

        def tick():
            sync(dev)
            clock.append(time.perf_counter())
        with autocast(dev, prec):
            emb = m.embed(task, batch.input_ids, batch.token_type_ids)
            loss = task_loss(task, m.forward_embedded(task, emb, batch.attention_mask), batch.labels)
        tick()
        torch.autograd.grad(loss, emb, retain_graph=True)   # input gradients only, as SMART's ascent
        tick()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        tick()
        opt.step()
        tick()
        if record:
            for k, a, b in zip(PHASES, clock, clock[1:]):
                phases[k].append(b - a)
    return step


def _systems(base_path: str, base: str, task: str, cfg: TrainConfig, smart_cfg: TrainConfig, dev: torch.device,
             prec: str, seed: int) -> dict[str, Callable[[Batch], None]]:
    """The three timed systems by name: the plain loop, the tool's step, the tool's step with SMART."""
    return {
        "transformers loop (AutoModelForSequenceClassification + AdamW)": _plain_system(base_path, task, cfg, dev,
                                                                                        prec, seed),
        "ensemble training_step": _tool_system(_tool_model(base_path, base, cfg, dev, seed), cfg, dev, prec, seed),
        f"ensemble training_step + SMART {smart_cfg.smart_weight:g}": _tool_system(
            _tool_model(base_path, base, smart_cfg, dev, seed), smart_cfg, dev, prec, seed),
    }


def _interleave(systems: dict[str, Callable[[Batch], None]], phase_step, batches: list[Batch], warmup: int,
                dev: torch.device, progress, label: str) -> dict[str, list[float]]:
    """Batch i for every system (who goes first rotates), then the phase step; seconds per timed
    step per system (the first ``warmup`` batches untimed)."""
    times: dict[str, list[float]] = {k: [] for k in systems}
    names = list(systems)
    progress.start(label, len(batches))
    for i, b in enumerate(batches):
        batch = b.to(dev, non_blocking=dev.type == "cuda")
        # rotate who goes first: the first system after another's optimizer step runs on colder caches
        for name in names[i % len(names):] + names[: i % len(names)]:
            step = systems[name]
            sync(dev)
            t0 = time.perf_counter()
            step(batch)
            sync(dev)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
        sync(dev)
        phase_step(batch, i >= warmup)
        progress.advance(1)
    progress.stop()
    return times


def _train_rows(times: dict[str, list[float]], tokens: int) -> list[dict[str, Any]]:
    rows = [{"system": name, "steps": len(ts), "tokens": tokens, "seconds": sum(ts),
             "tokens_per_s": tokens / sum(ts), "step_ms": 1000 * statistics.median(ts), "vs_plain": None}
            for name, ts in times.items()]
    for r in rows:
        r["vs_plain"] = r["tokens_per_s"] / rows[0]["tokens_per_s"]
    return rows


def bench_train(base: str = "minilm", data_dir: str | Path = "data", steps: int = 20, batch_size: int = 16,
                task: str = "sst", smart_weight: float = 10.0, warmup: int = 2, device: str | None = None,
                precision: str = "auto", threads: int | None = None, seed: int = 0, progress=None) -> dict[str, Any]:
    """A training step of the tool (plain and with SMART ``smart_weight``) against a plain
    transformers loop, on the same ``warmup + steps`` batches of ``task``'s train file.

    Every system gets its own model from the same base weights and its own AdamW (the tool's: the
    layer-wise groups of :func:`ensemble.training.finetune.param_groups`, as ``train`` builds it; the plain
    loop's: one group, same base rate and weight decay). Steps are interleaved (batch i for every
    system, then batch i + 1) and each is timed alone: forward, loss, backward, optimizer step.

    Returns ``title``, ``rows`` (``system``, ``steps``, ``tokens``, ``seconds``, ``tokens_per_s``,
    ``step_ms`` (median), ``vs_plain``), ``tool_vs_plain`` (tokens/s ratio, >= 1 means the tool is
    at least as fast), ``smart_overhead`` (SMART step time / plain tool step time), ``targets``
    (tool vs plain >= 1, SMART overhead and its floor <= 2.5: ``value``, ``target``, ``met``), ``smart_floor``
    (the plain step's phases, timed on a fourth model in the same interleaved loop, and the least
    SMART overhead they allow: :func:`smart_floor`), ``smart_vs_floor`` (median SMART overhead /
    that floor; 1.0 is no waste), ``batches``
    (real and padded tokens), ``machine``, ``precision`` and load averages.
    """
    get_task(task)
    progress = progress or NULL
    dev = pick_device(device)
    prec = precision if precision != "auto" else ("bf16" if dev.type == "cuda" else "fp32")
    check_precision(prec, dev)
    load_before = load_average()
    with torch_threads(threads), quiet_transformers():
        base_path = resolve_base(base)
        cfg = TrainConfig(base=base, batch_size=batch_size, seed=seed)
        smart_cfg = TrainConfig(base=base, batch_size=batch_size, seed=seed, smart_weight=smart_weight)
        split = read_split(Path(data_dir), task, "train")
        _, tokenizer = load_base(base_path, cfg.hidden_dropout)
        batches = _train_batches(split, tokenizer, batch_size, warmup + steps, seed)
        systems = _systems(base_path, base, task, cfg, smart_cfg, dev, prec, seed)
        phases: dict[str, list[float]] = {k: [] for k in PHASES}
        phase_step = _phase_system(_tool_model(base_path, base, cfg, dev, seed), task, dev, prec, phases)
        times = _interleave(systems, phase_step, batches, warmup, dev, progress,
                            f"train steps ({task}, batch {batch_size})")
        optimizer_ms = _optimizer_step_ms(base_path, cfg, dev)
        machine = machine_facts(dev)

    floor = smart_floor({k: 1000 * statistics.median(v) for k, v in phases.items()}, smart_cfg.smart_steps)
    return {"title": f"training step: {base} on {machine['device']}, {task}, batch {batch_size}, {prec}",
            **_comparison(times, floor, batches[warmup:], warmup),
            "optimizer_step_ms": optimizer_ms, "precision": prec, "machine": machine,
            "load_before": load_before, "load_after": load_average()}


def _comparison(times: dict[str, list[float]], floor: dict[str, Any], timed: list[Batch],
                warmup: int) -> dict[str, Any]:
    """The rows, the ratios between the three systems, the targets and the SMART floor."""
    tokens = sum(b.n_tokens for b in timed)
    rows = _train_rows(times, tokens)
    plain, tool, smart = rows
    return {
        "rows": rows,
        "tool_vs_plain": tool["tokens_per_s"] / plain["tokens_per_s"],
        "smart_overhead": smart["seconds"] / tool["seconds"],
        "smart_overhead_median": smart["step_ms"] / tool["step_ms"],
        "targets": train_targets(tool["tokens_per_s"] / plain["tokens_per_s"], smart["seconds"] / tool["seconds"],
                                 floor["floor_ratio"]),
        "smart_floor": floor,
        "smart_vs_floor": (smart["step_ms"] / tool["step_ms"]) / floor["floor_ratio"],
        "batches": {"steps": len(timed), "warmup": warmup, "real_tokens": tokens,
                    "padded_tokens": sum(b.input_ids.numel() for b in timed)},
    }
