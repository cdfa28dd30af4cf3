"""Benchmarks of the tool's inference and training paths against plain ``transformers``.

Plain dicts out (the CLI renders them): ``title``, ``rows`` (one dict per measured system, all with
the same keys) and further sections. No typer/rich here.

:func:`bench_inference`
    On the same inputs in one process (SST dev sentences; Quora dev pairs, optionally a seeded
    subsample): a ``transformers.pipeline("text-classification")`` over
    ``AutoModelForSequenceClassification`` (its defaults: one input at a time; and
    ``batch_size=32``), and the tool's :func:`ensemble.infer.predict_encoded` over a ``multi``
    :class:`~ensemble.model.MultitaskModel` in fp32 and bf16 (where the CPU has it). Both models
    hold the same encoder weights and the same head, so both compute the same function; the head
    is a linear probe fitted on a few train rows, so that argmax agreement is measured on a
    classifier with real margins rather than on a random head. Each row reports inputs/s (a pair
    counts once), useful GFLOP/s (FLOPs counted analytically from the real token counts, no
    padding: :func:`model_flops`), the fraction of the measured dense matmul rate
    (:func:`matmul_peak`) for its precision, the speed-up over the pipeline's defaults and the
    peak memory (see :class:`PeakMemory`). Accuracy checks: fp32 predictions against a plain
    unbatched forward (one input at a time, no padding; :func:`unbatched_predictions`) to 1e-4,
    bf16 argmax agreement with fp32 (>= 99.5% on SST dev), pipeline against tool. The tool is
    timed twice per precision: tokenising included (as the pipeline does), and on tokens already
    cached (what every further model on the same file costs: the model's work alone).

:func:`bench_train`
    One training step of the tool (:func:`ensemble.train.training_step` with the optimizer that
    :func:`ensemble.train.train` builds), plain and with SMART, against a plain transformers loop
    (``AutoModelForSequenceClassification`` + ``torch.optim.AdamW``) on the very same batches,
    interleaved step by step so that a change of machine load hits every system alike.

Timings: wall clock, best of ``repeats`` (the median is reported too), CUDA synchronised before
every clock read. The machine's load average is reported: other processes on a small machine
change the numbers a lot.
"""
from __future__ import annotations

import gc
import os
import platform
import re
import resource
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..batches import Encoded, budget_batches, collate, encode, max_length_for, training_batches
from ..data import read_split
from ..errors import EnsembleError
from ..infer import autocast, check_precision, cpu_has_bf16, default_max_tokens, pick_device, predict_encoded
from ..metrics import round_predictions
from ..model import quiet_transformers as _quiet_transformers
from ..model import ModelConfig, MultitaskModel, load_base, outputs_to_predictions, resolve_base, task_loss
from ..progress import NULL
from ..tasks import TASK_NAMES, TASKS, get_task

FP32_TOLERANCE = 1e-4        # fp32 batched vs unbatched, max abs difference of the predictions
BF16_MIN_AGREEMENT = 0.995   # bf16 vs fp32 argmax agreement on SST dev


# -- the machine ---------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device | str = "cpu", precision: str = "fp32", sizes: tuple[int, ...] = (1024, 2048),
                repeats: int = 5) -> dict[str, Any]:
    """Dense matmul rate of the machine: n x n by n x n products, best of ``repeats`` per size, best
    over the sizes (``gflops`` = 2 n^3 / seconds / 1e9).

    Two ways are timed where they exist: ``torch.matmul`` (on a CPU: MKL's sgemm for fp32, oneDNN
    for bf16; on CUDA: cuBLAS), and on a CPU oneDNN's matmul on a pre-packed weight (the kernel
    :func:`ensemble.infer.packed_linears` uses; on AMD CPUs MKL's fp32 sgemm reaches only about half
    of it). ``gflops`` is the better of the two: the machine's rate, not one library's.

    Returns ``gflops``, ``n``, ``seconds``, ``method`` (of the best), ``torch_matmul_gflops`` and
    ``onednn_gflops`` (None where not measured).
    """
    from ..infer import _onednn_linear_ops

    device = torch.device(device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    gen = torch.Generator().manual_seed(0)
    ops = _onednn_linear_ops() if device.type == "cpu" and precision in ("fp32", "bf16") else None
    rates: dict[str, tuple[float, int, float]] = {}

    def timeit(method: str, fn, n: int) -> None:
        fn()  # warm up (thread pool, kernels, GPU clocks)
        _sync(device)
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            dt = time.perf_counter() - t0
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
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def _reset_peak_rss(_after_trim: bool = False) -> bool:
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
        elif _reset_peak_rss(trimmed := _malloc_trim()):
            self._start = (_read_kib("VmRSS") or 0) * 1024
            self.method = ("peak RSS: VmHWM of /proc/self/status, reset per run via /proc/self/clear_refs"
                           + (" after malloc_trim(0)" if trimmed else ""))
        else:
            self._start = (_read_kib("VmRSS") or 0) * 1024
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
def _threads(n: int | None):
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _machine(device: torch.device) -> dict[str, Any]:
    d: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
                         "cpu_count": os.cpu_count()}
    try:
        import transformers
        d["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover
        pass
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


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


# -- a random encoder of a given size ------------------------------------------------------------
def make_random_base(out: str | Path, layers: int = 12, hidden: int = 768, heads: int = 12,
                     intermediate: int | None = None, tokenizer_from: str = "minilm", seed: int = 0) -> Path:
    """Write a randomly initialised BERT encoder (safetensors) with ``tokenizer_from``'s tokenizer
    into ``out``: a ``--base`` of any size with no download (the defaults are BERT-base's shape;
    MiniLM's tokenizer is bert-base-uncased's WordPiece vocabulary). For speed measurements only:
    random weights predict nothing. Refuses a non-empty ``out``; written to a temporary folder first
    and renamed into place."""
    import shutil
    import tempfile

    from transformers import AutoTokenizer, BertConfig, BertModel

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EnsembleError(f"{out}: exists and is not an empty folder; expected a new folder for the model")
    if layers < 1 or hidden < 1 or heads < 1 or hidden % heads or (intermediate is not None and intermediate < 1):
        raise EnsembleError(f"--layers {layers}, --hidden {hidden}, --heads {heads}, --intermediate {intermediate}: "
                            "expected positive sizes with hidden divisible by heads")
    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(resolve_base(tokenizer_from), use_fast=True)
        cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, intermediate_size=intermediate or 4 * hidden,
                         max_position_embeddings=512, type_vocab_size=2)
        torch.manual_seed(seed)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            BertModel(cfg, add_pooling_layer=True).save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            if out.exists():
                out.rmdir()
            tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


# -- FLOPs ---------------------------------------------------------------------------------------
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


# -- accuracy checks -----------------------------------------------------------------------------
@torch.inference_mode()
def unbatched_predictions(model: MultitaskModel, enc: Encoded, device: torch.device | str | None = None,
                          rows=None) -> np.ndarray:
    """Predictions from a plain forward pass, one input at a time, no padding (fp32, eval mode)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    rows = range(len(enc)) if rows is None else rows
    was = model.training
    model.eval()
    out = []
    try:
        for r in rows:
            ids = torch.tensor([enc.input_ids[r]], device=device)
            tt = torch.tensor([enc.token_type_ids[r]], device=device)
            y = model(enc.task, ids, torch.ones_like(ids), tt)
            out.append(outputs_to_predictions(enc.task, y).double().cpu().numpy()[0])
    finally:
        model.train(was)
    k = model.heads[enc.task][-1].out_features
    return np.array(out, dtype=np.float64).reshape(-1, k)


def predicted_labels(task: str, predictions: np.ndarray) -> np.ndarray:
    """The label each prediction row stands for, rounded as the leaderboard rounds it."""
    return round_predictions(task, predictions)


def label_agreement(task: str, a: np.ndarray, b: np.ndarray) -> float:
    """Share of rows whose predicted label is the same in ``a`` and ``b`` (regression: not defined)."""
    if TASKS[task].kind == "regression":
        raise EnsembleError("label agreement is defined for classification tasks only")
    if len(a) == 0:
        return 1.0
    return float(np.mean(predicted_labels(task, a) == predicted_labels(task, b)))


# -- models under test ---------------------------------------------------------------------------
def _pooled_features(model: MultitaskModel, enc: Encoded, device: torch.device, batch: int = 64) -> torch.Tensor:
    """The head's inputs (pooled [CLS]) for every row of ``enc``, in order, fp32."""
    feats: list[torch.Tensor] = []
    hook = model.heads[enc.task].register_forward_pre_hook(lambda m, args: feats.append(args[0].detach().float().cpu()))
    try:
        with torch.inference_mode():
            for s in range(0, len(enc), batch):
                b = collate(enc, np.arange(s, min(s + batch, len(enc)))).to(device)
                model(enc.task, b.input_ids, b.attention_mask, b.token_type_ids)
    finally:
        hook.remove()
    return torch.cat(feats)


def fit_probe_head(model: MultitaskModel, enc: Encoded, device: torch.device, iters: int = 200) -> float:
    """Fit ``model.heads[task]``'s linear layer (frozen encoder) to ``enc``'s labels with L-BFGS;
    returns the training accuracy (or r for regression)."""
    task = enc.task
    x = _pooled_features(model, enc, device)
    x = x.clone()  # inference tensors cannot take part in autograd
    y = torch.from_numpy(np.asarray(enc.labels))
    lin = model.heads[task][-1]
    w = torch.zeros(lin.out_features, lin.in_features, requires_grad=True)
    b = torch.zeros(lin.out_features, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = task_loss(task, x @ w.T + b, y) + 1e-3 * (w ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    with torch.no_grad():
        lin.weight.copy_(w.detach().to(lin.weight))
        lin.bias.copy_(b.detach().to(lin.bias))
        out = (x @ w.T + b).numpy()
    if TASKS[task].kind == "regression":
        return float(np.corrcoef(out[:, 0], y.numpy())[0, 1])
    pred = out.argmax(1) if TASKS[task].kind == "classes" else (out[:, 0] > 0).astype(np.int64)
    return float(np.mean(pred == y.numpy()))


def _sequence_classifier(model: MultitaskModel, base_path: str, task: str, device: torch.device):
    """``AutoModelForSequenceClassification`` with the tool model's encoder, pooler and head weights.

    Returns (classifier, same_weights): ``same_weights`` is False where the classifier's layout
    does not match a BERT-style encoder + pooler + linear head (the pipeline then runs the base
    weights with its own head: the same amount of work, other outputs).
    """
    from transformers import AutoModelForSequenceClassification

    k = TASKS[task].n_outputs
    clf = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=k, attn_implementation="sdpa",
                                                             use_safetensors=True)
    same = False
    enc_mod = getattr(clf, clf.base_model_prefix, None)
    head = getattr(clf, "classifier", None)
    if (model.config.architecture == "multi" and enc_mod is not None and isinstance(head, torch.nn.Linear)
            and getattr(enc_mod, "pooler", None) is not None):
        state = {}
        state.update({f"embeddings.{k_}": v for k_, v in model.embeddings["shared"].state_dict().items()})
        state.update({f"encoder.layer.{k_}": v for k_, v in model.stacks["shared"].state_dict().items()})
        state.update({f"pooler.{k_}": v for k_, v in model.poolers["shared"].state_dict().items()})
        missing, unexpected = enc_mod.load_state_dict(state, strict=False)
        missing = [m for m in missing if "position_ids" not in m and "token_type_ids" not in m]
        if not missing and not unexpected:
            with torch.no_grad():
                head.weight.copy_(model.heads[task][-1].weight)
                head.bias.copy_(model.heads[task][-1].bias)
            same = True
    return clf.to(device).eval(), same


def _pipeline_predictions(task: str, outputs: list[dict], label2id: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(label index, score) per input from the pipeline's default output (top label and its score)."""
    labels = np.array([label2id[o["label"]] for o in outputs], dtype=np.int64)
    scores = np.array([o["score"] for o in outputs], dtype=np.float64)
    return labels, scores


def _texts(split) -> list:
    if TASKS[split.task].pair:
        return [{"text": e.text_a, "text_pair": e.text_b or ""} for e in split.examples]
    return [e.text_a for e in split.examples]


def _time(fn: Callable[[], Any], repeats: int, device: torch.device) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(max(1, repeats)):
        _sync(device)
        t0 = time.perf_counter()
        result = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times, result


LINEAR_OPS = ("mkldnn::_linear_pointwise", "aten::addmm", "aten::mm")   # the matmul kernels themselves


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
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        _sync(device)
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


# -- inference ------------------------------------------------------------------------------------
def bench_inference(base: str = "minilm", data_dir: str | Path = "data", repeats: int = 3, include_quora: bool = True,
                    progress=None, quora_limit: int | None = None, pipeline_repeats: int = 1,
                    device: str | None = None, max_tokens: int | None = None, threads: int | None = None,
                    compile: bool = False, probe_rows: int = 1000, check_rows: int = 500,
                    profile: bool = True, matmul_sizes: tuple[int, ...] | None = None,
                    seed: int = 0) -> dict[str, Any]:
    """Time ``transformers.pipeline`` against the tool's batched inference on SST dev (and Quora dev).

    ``quora_limit``: a seeded random subsample of that many Quora dev pairs (for time).
    ``pipeline_repeats``: timed runs of each pipeline system (slow; best is kept).
    ``max_tokens``: the tool's token budget per batch (default: :func:`ensemble.infer.default_max_tokens`).
    ``threads``: ``torch.set_num_threads`` for the run (restored after).
    ``compile``: also time the tool's inference with ``compile=True`` (what ``--compile`` does:
    :func:`ensemble.infer.compiled`); the first call, which compiles, is reported apart in ``compile_s``.
    ``probe_rows``: train rows per task to fit the linear-probe heads on (0: random heads).
    ``check_rows``: Quora rows checked against the unbatched forward (SST: all).
    ``matmul_sizes``: the square sizes :func:`matmul_peak` tries (default: 1024 and 2048 on a CPU;
    2048, 4096 and 8192 on CUDA, where small products do not fill the GPU).
    ``profile``: one more untimed pass of the tool on SST per precision under ``torch.profiler``
    (:func:`profile_ops`): where the time goes besides the matmuls.

    Returns ``title``, ``targets`` (:func:`inference_targets`), ``rows`` (one per system: the
    pipeline's defaults, its batch of 32, the tool per precision with tokenising timed and
    :data:`TOKENISED_ONCE`, the compiled tool where asked; each with ``input``, ``system``,
    ``precision``, ``batch``, ``inputs``,
    ``tokens``, ``seconds`` (best), ``median_s``, ``inputs_per_s`` (a pair counts once),
    ``gflops`` (useful GFLOP/s), ``peak_fraction`` (of ``matmul[precision].gflops``), ``speedup``
    (over the pipeline's defaults on the same input), ``peak_mib``, ``extra_mib``: see
    :class:`PeakMemory`), ``machine``, ``matmul`` (per precision: :func:`matmul_peak`'s dict, the
    better of a run before and one after the systems), ``model`` (sizes, heads, probe scores,
    ``max_tokens``), ``inputs`` (per task: ``rows``, real ``tokens``, ``tool_padded_tokens``,
    ``gflop``), ``accuracy`` (per task: ``checked_rows``, ``fp32_max_abs_diff_unbatched``,
    ``fp32_matches_unbatched`` (<= 1e-4), ``bf16_agreement``, ``bf16_max_abs_diff``,
    ``pipeline_agreement``, ``pipeline_max_abs_diff``; plus ``bf16_agreement_ok`` (>= 99.5%) for
    sst), ``profile`` (per precision: ``total_ms`` and ``share``, the top operators' shares of the
    tool's time on SST, then ``other``; ``linear_ms``/``linear_share``: all linear-layer matmuls,
    ``linear_gflop`` their FLOPs, ``linear_gflops`` their rate and ``linear_peak_fraction`` that
    rate against the matmul peak: how much of the gap to the peak is the matmuls' and how much the
    rest's), ``memory_method``, ``compile_s``, ``load_before`` /
    ``load_after`` (1, 5, 15 min load averages) and ``notes``.
    """
    from transformers import pipeline as hf_pipeline

    progress = progress or NULL
    dev = pick_device(device)
    data_dir = Path(data_dir)
    notes: list[str] = []
    load_before = _load()
    precisions = ["fp32"]
    if dev.type == "cuda" or cpu_has_bf16():
        precisions.append("bf16")
    else:
        notes.append("bf16 skipped: this CPU has no bf16 support (AVX512-BF16/AMX)")
    for p in precisions:
        check_precision(p, dev)
    budget = max_tokens or default_max_tokens(dev)
    matmul_sizes = matmul_sizes or ((2048, 4096, 8192) if dev.type == "cuda" else (1024, 2048))
    tasks = ["sst"] + (["para"] if include_quora else [])

    with _threads(threads), _quiet_transformers():
        base_path = resolve_base(base)
        base_model, tokenizer = load_base(base_path, hidden_dropout=0.1)
        model = MultitaskModel.from_base(ModelConfig("multi", tuple(tasks), base=base), base_model).to(dev).eval()
        max_len = max_length_for(tokenizer, model.encoder_config)
        torch.manual_seed(seed)

        splits = {}
        for t in tasks:
            sp = read_split(data_dir, t, "dev")
            if t == "para" and quora_limit and quora_limit < len(sp.examples):
                keep = np.sort(np.random.default_rng(seed).choice(len(sp.examples), quora_limit, replace=False))
                sp.examples = [sp.examples[i] for i in keep]
            splits[t] = sp

        # heads: a linear probe on train rows (frozen encoder), so that agreement means something
        probe: dict[str, Any] = {}
        if probe_rows:
            for t in tasks:
                progress.start(f"probe head {t}", None)
                tr = read_split(data_dir, t, "train")
                tr.examples = tr.examples[:probe_rows]
                probe[t] = {"rows": len(tr.examples), "train_score": fit_probe_head(model, encode(tokenizer, tr, max_len), dev)}
                progress.stop()

        progress.start("matmul peak", len(precisions))
        matmul = {}
        for p in precisions:
            matmul[p] = matmul_peak(dev, p, sizes=matmul_sizes)
            progress.advance(1)
        progress.stop()

        rows: list[dict[str, Any]] = []
        inputs: dict[str, Any] = {}
        accuracy: dict[str, Any] = {}
        compile_times: dict[str, float] = {}
        profiles: dict[str, Any] = {}
        memory_method = ""
        for t in tasks:
            split = splits[t]
            texts = _texts(split)
            enc = encode(tokenizer, split, max_len)
            lengths = enc.lengths
            flops = model_flops(model, t, lengths)
            padded = sum(b.input_ids.numel() for b in budget_batches(enc, budget))
            inputs[t] = {"rows": len(enc), "tokens": int(lengths.sum()), "tool_padded_tokens": int(padded),
                         "gflop": flops / 1e9}
            clf, same = _sequence_classifier(model, base_path, t, dev)
            if not same:
                notes.append(f"{t}: the pipeline's model could not take the tool's weights; it runs the base "
                             "encoder with its own head (same work, other outputs)")
            pipe = hf_pipeline("text-classification", model=clf, tokenizer=tokenizer, device=dev)

            results: dict[str, Any] = {}

            def measure(system: str, precision: str, fn: Callable[[], Any], n_repeats: int, batch: str) -> Any:
                nonlocal memory_method
                progress.start(f"{t}: {system} {precision}", n_repeats)
                with PeakMemory(dev) as mem:
                    times = []
                    out = None
                    for _ in range(max(1, n_repeats)):
                        ts, out = _time(fn, 1, dev)
                        times += ts
                        progress.advance(1)
                progress.stop()
                memory_method = mem.method
                best = min(times)
                rows.append({
                    "input": f"{t} dev", "system": system, "precision": precision, "batch": batch,
                    "inputs": len(enc), "tokens": int(lengths.sum()), "seconds": best,
                    "median_s": statistics.median(times), "inputs_per_s": len(enc) / best,
                    "gflops": flops / best / 1e9,
                    "peak_fraction": None,   # set at the end, against the best matmul rate measured
                    "speedup": None, "peak_mib": mem.peak_mib, "extra_mib": mem.extra_mib,
                })
                return out

            # warm-up: one pass of each so first-call costs (thread pools, oneDNN primitives) are not timed
            pipe(texts[:8])
            predict_encoded(model, enc, dev, "fp32", budget)

            pipe_default = measure("transformers pipeline", "fp32", lambda: pipe(texts), pipeline_repeats, "1 (default)")
            measure("transformers pipeline", "fp32", lambda: pipe(texts, batch_size=32), pipeline_repeats, "32")

            def tool(precision, compile=False):
                def run():
                    e = encode(tokenizer, split, max_len)  # tokenising is part of the time, as in the pipeline
                    return predict_encoded(model, e, dev, precision, budget, compile=compile)
                return run
            for p in precisions:
                predict_encoded(model, enc, dev, p, budget)  # warm-up (autocast weight casts, primitives)
                results[p] = measure("ensemble predict_encoded", p, tool(p), repeats, f"{budget} tokens")
                # the second and later models on the same file: tokens come from the cache
                measure(TOKENISED_ONCE, p, lambda p=p: predict_encoded(model, enc, dev, p, budget), repeats,
                        f"{budget} tokens")
                if profile and t == "sst":
                    progress.start(f"{t}: profile {p}", None)
                    ops, lin = profile_ops(lambda: predict_encoded(model, enc, dev, p, budget), dev)
                    profiles[p] = {"total_ms": sum(o["ms"] for o in ops), "share": {o["op"]: o["share"] for o in ops},
                                   "linear_ms": lin["ms"], "linear_share": lin["share"],
                                   "linear_gflop": model_flops(model, t, lengths, attention=False) / 1e9}
                    progress.stop()
            if compile:   # what --compile does (ensemble.infer.compiled)
                for p in precisions:
                    t0 = time.perf_counter()
                    predict_encoded(model, enc, dev, p, budget, compile=True)
                    compile_times[f"{t} {p}"] = time.perf_counter() - t0
                    results[f"compiled-{p}"] = measure("ensemble predict_encoded --compile", p,
                                                       tool(p, compile=True), repeats, f"{budget} tokens")
                model.__dict__.pop("_ensemble_compiled", None)
                torch._dynamo.reset()

            # accuracy
            acc: dict[str, Any] = {}
            check = list(range(len(enc))) if t == "sst" else list(range(min(len(enc), check_rows)))
            progress.start(f"{t}: unbatched reference", None)
            ref = unbatched_predictions(model, enc, dev, check)
            progress.stop()
            diff = float(np.max(np.abs(results["fp32"][check] - ref))) if check else 0.0
            acc["checked_rows"] = len(check)
            acc["fp32_max_abs_diff_unbatched"] = diff
            acc["fp32_matches_unbatched"] = diff <= FP32_TOLERANCE
            if "bf16" in results:
                acc["bf16_agreement"] = label_agreement(t, results["bf16"], results["fp32"])
                acc["bf16_max_abs_diff"] = float(np.max(np.abs(results["bf16"] - results["fp32"])))
                if t == "sst":
                    acc["bf16_agreement_ok"] = acc["bf16_agreement"] >= BF16_MIN_AGREEMENT
            if same:
                labels, scores = _pipeline_predictions(t, pipe_default, clf.config.label2id)
                tool_labels = predicted_labels(t, results["fp32"])
                if TASKS[t].kind == "classes":
                    tool_scores = results["fp32"].max(axis=1)
                    acc["pipeline_agreement"] = float(np.mean(labels == tool_labels))
                else:
                    tool_scores = results["fp32"][:, 0]
                    acc["pipeline_agreement"] = float(np.mean((scores > 0.5) == (tool_scores > 0.5)))
                acc["pipeline_max_abs_diff"] = float(np.max(np.abs(scores - tool_scores)))
            for c in [k for k in results if k.startswith("compiled-")]:
                acc[f"{c}_max_abs_diff"] = float(np.max(np.abs(results[c] - results[c.split("-", 1)[1]])))
            accuracy[t] = acc
            del pipe, clf, pipe_default
            gc.collect()

        # the matmul rate once more (the machine's load may have dropped since): the better one counts
        progress.start("matmul peak (again)", len(precisions))
        for p in precisions:
            again = matmul_peak(dev, p, sizes=(matmul[p]["n"],), repeats=3)
            if again["gflops"] > matmul[p]["gflops"]:
                matmul[p] = again
            progress.advance(1)
        progress.stop()
        for r in rows:
            ref_row = next(x for x in rows if x["input"] == r["input"] and x["batch"] == "1 (default)")
            r["speedup"] = ref_row["seconds"] / r["seconds"]
            r["peak_fraction"] = r["gflops"] / matmul[r["precision"]]["gflops"]
        for p, prof in profiles.items():
            # the matmuls alone, timed under the profiler: how close the linear layers run to the peak,
            # and the most the whole pass could reach if everything else took no time
            rate = prof["linear_gflop"] / (prof["linear_ms"] / 1000) if prof["linear_ms"] else float("nan")
            prof["linear_gflops"] = rate
            prof["linear_peak_fraction"] = rate / matmul[p]["gflops"]
        if any(r["peak_fraction"] > 1 for r in rows):
            notes.append("a fraction above 1: the matmul rate was measured while the machine was busier than "
                         "during that run; rerun on an idle machine")
        machine = _machine(dev)

    cfg = model.encoder_config
    return {
        "title": f"inference: {base} on {machine['device']}",
        "rows": rows,
        "targets": inference_targets(rows, accuracy, str(dev)),
        "machine": machine,
        "matmul": matmul,
        "model": {"base": base, "path": base_path, "architecture": "multi", "layers": model.n_layers,
                  "hidden": cfg.hidden_size, "intermediate": cfg.intermediate_size,
                  "parameters": model.num_parameters(), "heads": ("linear probe" if probe_rows else "random"),
                  "probe": probe, "max_tokens": budget},
        "inputs": inputs,
        "accuracy": accuracy,
        "profile": profiles,
        "memory_method": memory_method,
        "compile_s": compile_times,
        "load_before": load_before,
        "load_after": _load(),
        "notes": notes,
    }


TOKENISED_ONCE = "ensemble predict_encoded, tokenised once"


def _target(value: float | None, target: float, at_least: bool = True) -> dict[str, Any]:
    met = None if value is None else (value >= target if at_least else value <= target)
    return {"value": value, "target": f"{'>=' if at_least else '<='} {target:g}", "met": met}


PEAK_TARGET = 0.85        # of the measured matmul peak, SST dev, fp32 and bf16
CUDA_PEAK_TARGET = 0.40   # bf16 on CUDA, a BERT-base-sized model
SPEEDUP_TARGET = 5.0      # over transformers.pipeline with its defaults, SST dev
SMART_TARGET = 2.5        # SMART step / plain step


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
            out[f"sst {p} fraction of matmul peak"] = _target(r["peak_fraction"], PEAK_TARGET)
    if tool("fp32") is not None:
        out["sst fp32 speed-up over pipeline defaults"] = _target(tool("fp32")["speedup"], SPEEDUP_TARGET)
    acc = accuracy.get("sst", {})
    if "fp32_max_abs_diff_unbatched" in acc:
        out["sst fp32 max abs diff vs unbatched"] = _target(acc["fp32_max_abs_diff_unbatched"], FP32_TOLERANCE, False)
    if "bf16_agreement" in acc:
        out["sst bf16 argmax agreement with fp32"] = _target(acc["bf16_agreement"], BF16_MIN_AGREEMENT)
    cuda = [r for r in rows if r["system"] == TOKENISED_ONCE and r["precision"] == "bf16"]
    if device.startswith("cuda") and cuda:
        out["CUDA bf16 fraction of matmul peak, tokenised once"] = _target(max(r["peak_fraction"] for r in cuda),
                                                                          CUDA_PEAK_TARGET)
    return out


# -- training -------------------------------------------------------------------------------------
def _optimizer_step_ms(base_path: str, cfg, device: torch.device, steps: int = 5) -> dict[str, float]:
    """Median AdamW step (ms) over the tool's parameter groups: as ``train`` builds it, and fused."""
    from ..train import param_groups

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
            _sync(device)
            t0 = time.perf_counter()
            opt.step()
            _sync(device)
            ts.append(time.perf_counter() - t0)
        out[label] = 1000 * statistics.median(ts[1:])
    return out


PHASES = ("forward_ms", "input_backward_ms", "backward_ms", "optimizer_ms")


def smart_floor(phase_ms: dict[str, float], steps: int = 1) -> dict[str, Any]:
    """The least a SMART step can cost against a plain one, from the plain step's measured phases.

    A plain step is a forward ``F``, a backward ``B`` and an optimizer step ``O``. A SMART step
    (:mod:`ensemble.smart`) does the clean forward, then per ascent step a forward on the noised
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


def bench_train(base: str = "minilm", data_dir: str | Path = "data", steps: int = 20, batch_size: int = 16,
                task: str = "sst", smart_weight: float = 10.0, warmup: int = 2, device: str | None = None,
                precision: str = "auto", threads: int | None = None, seed: int = 0, progress=None) -> dict[str, Any]:
    """A training step of the tool (plain and with SMART ``smart_weight``) against a plain
    transformers loop, on the same ``warmup + steps`` batches of ``task``'s train file.

    Every system gets its own model from the same base weights and its own AdamW (the tool's: the
    layer-wise groups of :func:`ensemble.train.param_groups`, as ``train`` builds it; the plain
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
    from transformers import AutoModelForSequenceClassification

    from ..train import TrainConfig, make_optimizer, training_step

    get_task(task)
    progress = progress or NULL
    dev = pick_device(device)
    prec = precision if precision != "auto" else ("bf16" if dev.type == "cuda" else "fp32")
    check_precision(prec, dev)
    load_before = _load()
    with _threads(threads), _quiet_transformers():
        base_path = resolve_base(base)
        cfg = TrainConfig(base=base, batch_size=batch_size, seed=seed)
        smart_cfg = TrainConfig(base=base, batch_size=batch_size, seed=seed, smart_weight=smart_weight)

        split = read_split(Path(data_dir), task, "train")
        n_batches = warmup + steps
        split.examples = split.examples[: max(n_batches * batch_size * 4, batch_size)]
        _, tokenizer = load_base(base_path, cfg.hidden_dropout)
        max_len = max_length_for(tokenizer, None)
        enc = encode(tokenizer, split, max_len, both_orders=TASKS[task].pair)
        batches = training_batches(enc, batch_size, np.random.default_rng(seed))
        if not batches:
            raise EnsembleError(f"{task} train file has no rows")
        batches = [batches[i % len(batches)] for i in range(n_batches)]

        def tool_model(tc: TrainConfig):
            """A fresh tool model from the base weights, in train mode, with the optimizer ``train`` builds."""
            torch.manual_seed(seed)
            bm, _ = load_base(base_path, tc.hidden_dropout)
            m = MultitaskModel.from_base(ModelConfig("multi", TASK_NAMES, 0, tc.head_dropout, tc.hidden_dropout,
                                                     base=base), bm).to(dev)
            return m.train(), make_optimizer(m, tc)

        def tool_system(tc: TrainConfig):
            m, opt = tool_model(tc)
            gen = torch.Generator().manual_seed(seed)

            def step(batch):
                total, _ = training_step(m, batch, tc.smart, dev, prec, gen)
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()
            return step

        def plain_system():
            torch.manual_seed(seed)
            clf = AutoModelForSequenceClassification.from_pretrained(
                base_path, num_labels=TASKS[task].n_outputs, attn_implementation="sdpa", use_safetensors=True,
                hidden_dropout_prob=cfg.hidden_dropout).to(dev)
            opt = torch.optim.AdamW(clf.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                    fused=dev.type == "cuda")
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

        phases: dict[str, list[float]] = {k: [] for k in PHASES}

        def phase_system():
            """The tool's plain step cut into its phases (see :func:`smart_floor`)."""
            m, opt = tool_model(cfg)

            def step(batch, record: bool):
                clock = [time.perf_counter()]

                def tick():
                    _sync(dev)
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

        systems = {
            "transformers loop (AutoModelForSequenceClassification + AdamW)": plain_system(),
            "ensemble training_step": tool_system(cfg),
            f"ensemble training_step + SMART {smart_weight:g}": tool_system(smart_cfg),
        }
        phase_step = phase_system()
        times: dict[str, list[float]] = {k: [] for k in systems}
        names = list(systems)
        progress.start(f"train steps ({task}, batch {batch_size})", n_batches)
        for i, b in enumerate(batches):
            batch = b.to(dev, non_blocking=dev.type == "cuda")
            # rotate who goes first: the first system after another's optimizer step runs on colder caches
            for name in names[i % len(names):] + names[: i % len(names)]:
                step = systems[name]
                _sync(dev)
                t0 = time.perf_counter()
                step(batch)
                _sync(dev)
                if i >= warmup:
                    times[name].append(time.perf_counter() - t0)
            _sync(dev)
            phase_step(batch, i >= warmup)
            progress.advance(1)
        progress.stop()
        optimizer_ms = _optimizer_step_ms(base_path, cfg, dev)
        machine = _machine(dev)

    timed = batches[warmup:]
    floor = smart_floor({k: 1000 * statistics.median(v) for k, v in phases.items()}, smart_cfg.smart_steps)
    tokens = sum(b.n_tokens for b in timed)
    padded = sum(b.input_ids.numel() for b in timed)
    rows = []
    for name, ts in times.items():
        rows.append({"system": name, "steps": len(ts), "tokens": tokens, "seconds": sum(ts),
                     "tokens_per_s": tokens / sum(ts), "step_ms": 1000 * statistics.median(ts), "vs_plain": None})
    plain, tool, smart = rows
    for r in rows:
        r["vs_plain"] = r["tokens_per_s"] / plain["tokens_per_s"]
    return {
        "title": f"training step: {base} on {machine['device']}, {task}, batch {batch_size}, {prec}",
        "rows": rows,
        "tool_vs_plain": tool["tokens_per_s"] / plain["tokens_per_s"],
        "smart_overhead": smart["seconds"] / tool["seconds"],
        "smart_overhead_median": smart["step_ms"] / tool["step_ms"],
        "targets": {"tool tokens/s vs plain loop": _target(tool["tokens_per_s"] / plain["tokens_per_s"], 1.0),
                    "SMART step / plain step": _target(smart["seconds"] / tool["seconds"], SMART_TARGET, False),
                    "SMART step / plain step, least possible (smart_floor)": _target(floor["floor_ratio"],
                                                                                     SMART_TARGET, False)},
        "smart_floor": floor,
        "smart_vs_floor": (smart["step_ms"] / tool["step_ms"]) / floor["floor_ratio"],
        "batches": {"steps": len(timed), "warmup": warmup, "real_tokens": tokens, "padded_tokens": padded},
        "optimizer_step_ms": optimizer_ms,
        "precision": prec,
        "machine": machine,
        "load_before": load_before,
        "load_after": _load(),
    }
