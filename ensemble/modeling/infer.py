"""Batched inference: the one inference path of the tool (dev evaluation, registration, predict, bench).

Eval mode, no autograd (``torch.inference_mode``), batches cut by a token budget from
length-sorted rows and padded per batch, results returned in input order keyed by id.
Tokenisation is done once per input file for every model that shares a tokenizer (see
:class:`TokenCache`). On CUDA, batches are pinned and copied without blocking and predictions
stay on the device until the end. On a CPU, linear layers run oneDNN on packed weights
(:func:`ensemble.modeling.kernels.packed_linears`) and the token budget is cache-sized
(:data:`CPU_MAX_TOKENS`). Measured with :mod:`ensemble.bench`.
"""
from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from .config import DEVICES, INFER_PRECISIONS
from .batches import Encoded, budget_batches, encode, max_length_for
from ..errors import EnsembleError, shown
from .kernels import compiled, compiled_context, cpu_attention, packed_linears
from .model import outputs_to_predictions



def pick_device(device: str | None = None) -> torch.device:
    """``None``/``auto``: CUDA when present, else CPU; ``cpu``, ``cuda`` or ``cuda:N``, checked."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    expected = "expected auto, cpu, cuda or cuda:N (N a GPU index)"
    if not re.fullmatch(DEVICES, device):
        raise EnsembleError(f"--device {shown(device)}: unknown device; {expected}")
    d = torch.device(device)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise EnsembleError(f"--device {device}: CUDA is not available on this machine")
    if d.index is not None and d.index >= torch.cuda.device_count():
        raise EnsembleError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s); "
                            f"expected an index below that")
    return d


def cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # pragma: no cover - very old builds
        return False


def check_precision(precision: str, device: torch.device) -> None:
    if precision not in INFER_PRECISIONS:
        raise EnsembleError(f"--precision {precision}: expected one of {', '.join(INFER_PRECISIONS)}")
    if device.type == "cpu" and precision == "fp16":
        raise EnsembleError("--precision fp16 needs a CUDA device; on a CPU use fp32 or bf16")
    if device.type == "cpu" and precision == "bf16" and not cpu_has_bf16():
        raise EnsembleError("--precision bf16: this CPU has no bf16 support (AVX512-BF16/AMX); use fp32")


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class TokenCache:
    """Tokenised splits keyed by (tokenizer, input file hash, task, max length)."""
    store: dict = field(default_factory=dict)
    _fp: dict = field(default_factory=dict)

    def get(self, tokenizer, split, max_length: int) -> Encoded:
        entry = self._fp.get(id(tokenizer))
        if entry is None or entry[0] is not tokenizer:   # keep the tokenizer alive: ids are never reused
            entry = self._fp[id(tokenizer)] = (tokenizer, tokenizer_fingerprint(tokenizer))
        fp = entry[1]
        key = (fp, getattr(split, "sha256", None) or id(split), len(split.examples), split.task, max_length)
        if key not in self.store:
            self.store[key] = encode(tokenizer, split, max_length)
        return self.store[key]


# Token budget per inference batch when none is given. On a CPU, batches whose activations stay in
# the caches run fastest (measured with ensemble.bench on MiniLM and 2 AVX-512 cores); a GPU wants
# large batches to fill its cores.
CPU_MAX_TOKENS = 2048
CUDA_MAX_TOKENS = 16384


def default_max_tokens(device: torch.device) -> int:
    return CUDA_MAX_TOKENS if device.type == "cuda" else CPU_MAX_TOKENS


def _runner(model, device: torch.device, precision: str, compile: bool):
    """(what to call, the settings to run it under): the compiled model under inductor's settings,
    or the model itself with the CPU rewrites."""
    if compile:
        return compiled(model), [compiled_context(device)]
    return model, [packed_linears(model, device, precision), cpu_attention(model, device, precision)]


def _forward(runner, batch, compile: bool) -> torch.Tensor:
    try:
        return runner(batch.task, batch.input_ids, batch.attention_mask, batch.token_type_ids)
    except Exception as e:
        if not compile or isinstance(e, EnsembleError):
            raise
        raise EnsembleError(f"--compile: torch.compile failed on this machine ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}); run without --compile") from e


@torch.inference_mode()
def predict_encoded(model, enc: Encoded, device: torch.device | None = None, precision: str = "fp32",
                    max_tokens: int | None = None, progress=None, compile: bool = False) -> np.ndarray:
    """Unrounded predictions (n, k) float64 for every row of ``enc``, in ``enc``'s row order.

    ``max_tokens``: padded tokens per batch; ``None`` picks :func:`default_max_tokens` for the device.
    ``compile``: run the model through :func:`ensemble.modeling.kernels.compiled` (``torch.compile``); the
    first batches of each task compile (seconds to tens of seconds), so it can pay only on large
    inputs; measured on a 2-core CPU it ran no faster than the CPU rewrites (``ensemble bench
    inference --compile``). The CPU-only rewrites (:func:`ensemble.modeling.kernels.packed_linears`,
    :func:`ensemble.modeling.kernels.cpu_attention`) are left to the compiler then.
    """
    device = torch.device(device or next(model.parameters()).device)
    was_training = model.training
    model.eval()
    k = model.heads[enc.task][-1].out_features
    out = np.empty((len(enc), k), dtype=np.float64)
    if len(enc) == 0:
        return out
    cuda = device.type == "cuda"
    batches = budget_batches(enc, max_tokens=max_tokens or default_max_tokens(device))
    results = []
    runner, settings = _runner(model, device, precision, compile)
    try:
        with autocast(device, precision), contextlib.ExitStack() as stack:
            for setting in settings:
                stack.enter_context(setting)
            for batch in batches:
                if cuda:  # pinned host memory: the copy overlaps the previous batch's compute
                    batch = batch.pin_memory()
                # stays on the device: one transfer (and one synchronisation) at the end
                results.append(outputs_to_predictions(enc.task, _forward(runner, batch.to(device, non_blocking=cuda),
                                                                         compile)))
                if progress is not None:
                    progress.advance(len(batch.rows))
    finally:
        model.train(was_training)
    out[np.concatenate([b.rows for b in batches])] = torch.cat(results).double().cpu().numpy()
    return out


def predict_split(model, tokenizer, split, device=None, precision: str = "fp32", cache: TokenCache | None = None,
                  max_tokens: int | None = None, progress=None, compile: bool = False) -> tuple[list[str], np.ndarray]:
    """(ids, predictions) for a data split, ids in the file's order."""
    max_len = max_length_for(tokenizer, getattr(model, "encoder_config", None),
                             getattr(getattr(model, "config", None), "max_length", None))
    enc = cache.get(tokenizer, split, max_len) if cache is not None else encode(tokenizer, split, max_len)
    return enc.ids, predict_encoded(model, enc, device, precision, max_tokens, progress, compile)
