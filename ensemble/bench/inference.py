"""The tool's batched inference against ``transformers.pipeline`` on the same inputs, in one process.

SST dev sentences and Quora dev pairs (optionally a seeded subsample): a
``transformers.pipeline("text-classification")`` over ``AutoModelForSequenceClassification`` (its
defaults: one input at a time; and ``batch_size=32``), and :func:`ensemble.modeling.infer.predict_encoded`
over a ``multi`` :class:`~ensemble.modeling.model.MultitaskModel` in fp32 and bf16 (where the CPU has it).
Both models hold the same encoder weights and the same head (a linear probe fitted on a few train
rows: :func:`ensemble.bench.accuracy.fit_probe_head`), so both compute the same function. The
tool is timed twice per precision: tokenising included (as the pipeline does), and on tokens
already cached (:data:`~ensemble.bench.targets.TOKENISED_ONCE`: the model's work alone).
"""
from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from transformers import pipeline as hf_pipeline

from ..modeling.bases import load_base, quiet_transformers, resolve_base
from ..modeling.batches import Encoded, budget_batches, encode, max_length_for
from ..data import Split, read_split
from ..modeling.infer import check_precision, cpu_has_bf16, default_max_tokens, pick_device, predict_encoded
from ..modeling.kernels import drop_compiled
from ..modeling.config import ModelConfig
from ..modeling.model import MultitaskModel
from ..progress import NULL
from .accuracy import compiled_accuracy, fit_probe_heads, pipeline_accuracy, tool_accuracy
from .pipeline import pipeline_inputs, sequence_classifier
from .machine import PeakMemory, load_average, machine_facts, matmul_peak, time_calls, torch_threads
from .profiling import inference_profile, linear_rate, model_flops
from .targets import TOKENISED_ONCE, inference_targets

TOOL = "ensemble predict_encoded"


def _dev_splits(data_dir: Path, tasks: list[str], quora_limit: int | None, seed: int) -> dict[str, Split]:
    """Each task's dev split; Quora's a seeded sample of ``quora_limit`` pairs where asked."""
    splits = {}
    for t in tasks:
        sp = read_split(data_dir, t, "dev")
        if t == "para" and quora_limit and quora_limit < len(sp.examples):
            keep = np.sort(np.random.default_rng(seed).choice(len(sp.examples), quora_limit, replace=False))
            sp.examples = [sp.examples[i] for i in keep]
        splits[t] = sp
    return splits


def _matmul_rates(dev: torch.device, precisions: list[str], sizes: tuple[int, ...], progress,
                  before: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`matmul_peak` per precision; given the rates measured ``before``, once more at their
    best size (the machine's load may have dropped since), the better one kept."""
    progress.start("matmul peak" if before is None else "matmul peak (again)", len(precisions))
    matmul = {}
    for p in precisions:
        if before is None:
            matmul[p] = matmul_peak(dev, p, sizes=sizes)
        else:
            again = matmul_peak(dev, p, sizes=(before[p]["n"],), repeats=3)
            matmul[p] = again if again["gflops"] > before[p]["gflops"] else before[p]
        progress.advance(1)
    progress.stop()
    return matmul


@dataclass
class _Run:
    """One bench_inference run: the model under test, its settings, and the rows measured so far."""
    model: MultitaskModel
    tokenizer: Any
    base_path: str
    dev: torch.device
    budget: int
    max_len: int
    precisions: list[str]
    progress: Any
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profiles: dict[str, Any] = field(default_factory=dict)
    compile_times: dict[str, float] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] = field(default_factory=dict)
    memory_method: str = ""

    def measure(self, enc: Encoded, flops: float, system: str, precision: str, fn: Callable[[], Any],
                n_repeats: int, batch: str) -> Any:
        """Time ``fn`` ``n_repeats`` times under :class:`PeakMemory`; add its row; return its result."""
        t = enc.task
        self.progress.start(f"{t}: {system} {precision}", n_repeats)
        with PeakMemory(self.dev) as mem:
            times = []
            out = None
            for _ in range(max(1, n_repeats)):
                ts, out = time_calls(fn, 1, self.dev)
                times += ts
                self.progress.advance(1)
        self.progress.stop()
        self.memory_method = mem.method
        best = min(times)
        self.rows.append({
            "input": f"{t} dev", "system": system, "precision": precision, "batch": batch,
            "inputs": len(enc), "tokens": int(enc.lengths.sum()), "seconds": best,
            "median_s": statistics.median(times), "inputs_per_s": len(enc) / best,
            "gflops": flops / best / 1e9,
            "peak_fraction": None,   # set at the end, against the best matmul rate measured
            "speedup": None, "peak_mib": mem.peak_mib, "extra_mib": mem.extra_mib,
        })
        return out

    def predict(self, enc: Encoded, precision: str, compile: bool = False) -> np.ndarray:
        return predict_encoded(self.model, enc, self.dev, precision, self.budget, compile=compile)

    def tokenise_and_predict(self, split: Split, precision: str, compile: bool = False) -> Callable[[], np.ndarray]:
        def run():
            e = encode(self.tokenizer, split, self.max_len)  # tokenising is part of the time, as in the pipeline
            return self.predict(e, precision, compile)
        return run


def _time_tool(run: _Run, split: Split, enc: Encoded, flops: float, repeats: int, profile: bool) -> dict[str, Any]:
    """The tool per precision, tokenising timed and on cached tokens; on SST one profiled pass."""
    batch = f"{run.budget} tokens"
    results: dict[str, Any] = {}
    for p in run.precisions:
        run.predict(enc, p)  # warm-up (autocast weight casts, primitives)
        results[p] = run.measure(enc, flops, TOOL, p, run.tokenise_and_predict(split, p), repeats, batch)
        # the second and later models on the same file: tokens come from the cache
        run.measure(enc, flops, TOKENISED_ONCE, p, lambda p=p: run.predict(enc, p), repeats, batch)
        if profile and enc.task == "sst":
            run.progress.start(f"{enc.task}: profile {p}", None)
            run.profiles[p] = inference_profile(lambda: run.predict(enc, p), run.dev,
                                                model_flops(run.model, enc.task, enc.lengths, attention=False))
            run.progress.stop()
    return results


def _time_compiled(run: _Run, split: Split, enc: Encoded, flops: float, repeats: int,
                   results: dict[str, Any]) -> None:
    """What --compile does (:func:`ensemble.modeling.kernels.compiled`): the first call, which compiles,
    timed apart in ``compile_times``; then timed as the tool is."""
    for p in run.precisions:
        t0 = time.perf_counter()
        run.predict(enc, p, compile=True)
        run.compile_times[f"{enc.task} {p}"] = time.perf_counter() - t0
        results[f"compiled-{p}"] = run.measure(enc, flops, f"{TOOL} --compile", p,
                                               run.tokenise_and_predict(split, p, compile=True), repeats,
                                               f"{run.budget} tokens")
    drop_compiled(run.model)


def _bench_task(run: _Run, split: Split, repeats: int, pipeline_repeats: int, compile: bool, profile: bool,
                check_rows: int) -> None:
    """Every system on one task's dev split; its ``inputs`` and ``accuracy`` entries into ``run``."""
    t = split.task
    texts = pipeline_inputs(split)
    enc = encode(run.tokenizer, split, run.max_len)
    flops = model_flops(run.model, t, enc.lengths)
    padded = sum(b.input_ids.numel() for b in budget_batches(enc, run.budget))
    run.inputs[t] = {"rows": len(enc), "tokens": int(enc.lengths.sum()), "tool_padded_tokens": int(padded),
              "gflop": flops / 1e9}
    clf, same = sequence_classifier(run.model, run.base_path, t, run.dev)
    if not same:
        run.notes.append(f"{t}: the pipeline's model could not take the tool's weights; it runs the base "
                         "encoder with its own head (same work, other outputs)")
    pipe = hf_pipeline("text-classification", model=clf, tokenizer=run.tokenizer, device=run.dev)
    # warm-up: one pass of each so first-call costs (thread pools, oneDNN primitives) are not timed
    pipe(texts[:8])
    run.predict(enc, "fp32")
    pipe_default = run.measure(enc, flops, "transformers pipeline", "fp32", lambda: pipe(texts), pipeline_repeats,
                               "1 (default)")
    run.measure(enc, flops, "transformers pipeline", "fp32", lambda: pipe(texts, batch_size=32), pipeline_repeats, "32")
    results = _time_tool(run, split, enc, flops, repeats, profile)
    if compile:
        _time_compiled(run, split, enc, flops, repeats, results)
    check = list(range(len(enc))) if t == "sst" else list(range(min(len(enc), check_rows)))
    acc = tool_accuracy(run.model, enc, run.dev, results, check, run.progress)
    if same:
        acc.update(pipeline_accuracy(t, pipe_default, clf.config.label2id, results["fp32"]))
    acc.update(compiled_accuracy(results))
    run.accuracy[t] = acc
    del pipe, clf, pipe_default
    gc.collect()


def _finish(run: _Run, matmul: dict[str, Any]) -> None:
    """Speed-ups over the pipeline's defaults, fractions of the matmul peak, the profiled linear
    layers' rates, and a note where a fraction is above 1."""
    for r in run.rows:
        ref_row = next(x for x in run.rows if x["input"] == r["input"] and x["batch"] == "1 (default)")
        r["speedup"] = ref_row["seconds"] / r["seconds"]
        r["peak_fraction"] = r["gflops"] / matmul[r["precision"]]["gflops"]
    for p, prof in run.profiles.items():
        # the matmuls alone, timed under the profiler: how close the linear layers run to the peak,
        # and the most the whole pass could reach if everything else took no time
        linear_rate(prof, matmul[p]["gflops"])
    if any(r["peak_fraction"] > 1 for r in run.rows):
        run.notes.append("a fraction above 1: the matmul rate was measured while the machine was busier than "
                         "during that run; rerun on an idle machine")


def _precisions(dev: torch.device, notes: list[str]) -> list[str]:
    precisions = ["fp32"]
    if dev.type == "cuda" or cpu_has_bf16():
        precisions.append("bf16")
    else:
        notes.append("bf16 skipped: this CPU has no bf16 support (AVX512-BF16/AMX)")
    for p in precisions:
        check_precision(p, dev)
    return precisions


def _load_run(base: str, tasks: list[str], dev: torch.device, budget: int, precisions: list[str], notes: list[str],
              progress, seed: int) -> _Run:
    base_path = resolve_base(base)
    base_model, tokenizer = load_base(base_path, hidden_dropout=0.1)
    model = MultitaskModel.from_base(ModelConfig("multi", tuple(tasks), base=base), base_model).to(dev).eval()
    run = _Run(model, tokenizer, base_path, dev, budget, max_length_for(tokenizer, model.encoder_config), precisions,
               progress, notes=notes)
    torch.manual_seed(seed)
    return run


def bench_inference(base: str = "minilm", data_dir: str | Path = "data", repeats: int = 3, include_quora: bool = True,
                    progress=None, quora_limit: int | None = None, pipeline_repeats: int = 1,
                    device: str | None = None, max_tokens: int | None = None, threads: int | None = None,
                    compile: bool = False, probe_rows: int = 1000, check_rows: int = 500,
                    profile: bool = True, matmul_sizes: tuple[int, ...] | None = None,
                    seed: int = 0) -> dict[str, Any]:
    """Time ``transformers.pipeline`` against the tool's batched inference on SST dev (and Quora dev).

    ``quora_limit``: a seeded random subsample of that many Quora dev pairs (for time).
    ``pipeline_repeats``: timed runs of each pipeline system (slow; best is kept).
    ``max_tokens``: the tool's token budget per batch (default: :func:`ensemble.modeling.infer.default_max_tokens`).
    ``threads``: ``torch.set_num_threads`` for the run (restored after).
    ``compile``: also time the tool's inference with ``compile=True`` (what ``--compile`` does:
    :func:`ensemble.modeling.kernels.compiled`); the first call, which compiles, is reported apart in ``compile_s``.
    ``probe_rows``: train rows per task to fit the linear-probe heads on (0: random heads).
    ``check_rows``: Quora rows checked against the unbatched forward (SST: all).
    ``matmul_sizes``: the square sizes :func:`~ensemble.bench.machine.matmul_peak` tries (default:
    1024 and 2048 on a CPU; 2048, 4096 and 8192 on CUDA, where small products do not fill the GPU).
    ``profile``: one more untimed pass of the tool on SST per precision under ``torch.profiler``
    (:func:`~ensemble.bench.profiling.profile_ops`): where the time goes besides the matmuls.

    Returns ``title``, ``targets`` (:func:`~ensemble.bench.targets.inference_targets`), ``rows``
    (one per system: the pipeline's defaults, its batch of 32, the tool per precision with
    tokenising timed and :data:`~ensemble.bench.targets.TOKENISED_ONCE`, the compiled tool where
    asked; each with ``input``, ``system``, ``precision``, ``batch``, ``inputs``,
    ``tokens``, ``seconds`` (best), ``median_s``, ``inputs_per_s`` (a pair counts once),
    ``gflops`` (useful GFLOP/s), ``peak_fraction`` (of ``matmul[precision].gflops``), ``speedup``
    (over the pipeline's defaults on the same input), ``peak_mib``, ``extra_mib``: see
    :class:`~ensemble.bench.machine.PeakMemory`), ``machine``, ``matmul`` (per precision:
    ``matmul_peak``'s dict, the better of a run before and one after the systems), ``model`` (sizes,
    heads, probe scores, ``max_tokens``), ``inputs`` (per task: ``rows``, real ``tokens``,
    ``tool_padded_tokens``, ``gflop``), ``accuracy`` (per task: ``checked_rows``,
    ``fp32_max_abs_diff_unbatched``, ``fp32_matches_unbatched`` (<= 1e-4), ``bf16_agreement``,
    ``bf16_max_abs_diff``, ``pipeline_agreement``, ``pipeline_max_abs_diff``; plus
    ``bf16_agreement_ok`` (>= 99.5%) for sst), ``profile`` (per precision: ``total_ms`` and
    ``share``, the top operators' shares of the tool's time on SST, then ``other``;
    ``linear_ms``/``linear_share``: all linear-layer matmuls, ``linear_gflop`` their FLOPs,
    ``linear_gflops`` their rate and ``linear_peak_fraction`` that rate against the matmul peak),
    ``memory_method``, ``compile_s``, ``load_before`` / ``load_after`` (1, 5, 15 min load averages)
    and ``notes``.
    """
    progress = progress or NULL
    dev = pick_device(device)
    data_dir = Path(data_dir)
    notes: list[str] = []
    load_before = load_average()
    precisions = _precisions(dev, notes)
    budget = max_tokens or default_max_tokens(dev)
    matmul_sizes = matmul_sizes or ((2048, 4096, 8192) if dev.type == "cuda" else (1024, 2048))
    tasks = ["sst"] + (["para"] if include_quora else [])

    with torch_threads(threads), quiet_transformers():
        run = _load_run(base, tasks, dev, budget, precisions, notes, progress, seed)
        splits = _dev_splits(data_dir, tasks, quora_limit, seed)
        # heads: a linear probe on train rows (frozen encoder), so that agreement means something
        probe = (fit_probe_heads(run.model, run.tokenizer, data_dir, tasks, probe_rows, run.max_len, dev, progress)
                 if probe_rows else {})
        matmul = _matmul_rates(dev, precisions, matmul_sizes, progress)
        for t in tasks:
            _bench_task(run, splits[t], repeats, pipeline_repeats, compile, profile, check_rows)
        matmul = _matmul_rates(dev, precisions, matmul_sizes, progress, before=matmul)
        _finish(run, matmul)
        machine = machine_facts(dev)
    model = {"base": base, "path": run.base_path, "architecture": "multi", "layers": run.model.n_layers,
             "hidden": run.model.encoder_config.hidden_size, "intermediate": run.model.encoder_config.intermediate_size,
             "parameters": run.model.num_parameters(), "heads": ("linear probe" if probe_rows else "random"),
             "probe": probe, "max_tokens": budget}
    return _report(run, f"inference: {base} on {machine['device']}", machine, matmul, model, load_before)


def _report(run: _Run, title: str, machine: dict[str, Any], matmul: dict[str, Any], model: dict[str, Any],
            load_before: list[float] | None) -> dict[str, Any]:
    return {
        "title": title,
        "rows": run.rows,
        "targets": inference_targets(run.rows, run.accuracy, str(run.dev)),
        "machine": machine,
        "matmul": matmul,
        "model": model,
        "inputs": run.inputs,
        "accuracy": run.accuracy,
        "profile": run.profiles,
        "memory_method": run.memory_method,
        "compile_s": run.compile_times,
        "load_before": load_before,
        "load_after": load_average(),
        "notes": run.notes,
    }
