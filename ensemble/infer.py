"""Batched inference: the one inference path of the tool (dev evaluation, registration, predict, bench).

Eval mode, no autograd (``torch.inference_mode``), batches cut by a token budget from
length-sorted rows and padded per batch, results returned in input order keyed by id.
Tokenisation is done once per input file for every model that shares a tokenizer (see
:class:`TokenCache`). On CUDA, batches are pinned and copied without blocking and predictions
stay on the device until the end. On a CPU, linear layers run oneDNN on packed weights
(:func:`packed_linears`) and the token budget is cache-sized (:data:`CPU_MAX_TOKENS`).
Measured with :mod:`ensemble.bench`.
"""
from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from .batches import Encoded, budget_batches, encode, max_length_for
from .errors import EnsembleError
from .model import outputs_to_predictions

PRECISIONS = ("fp32", "bf16", "fp16")


def pick_device(device: str | None = None) -> torch.device:
    """``None``/``auto``: CUDA when present, else CPU."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = torch.device(device)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise EnsembleError(f"--device {device}: CUDA is not available on this machine")
    return d


def cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # pragma: no cover - very old builds
        return False


def check_precision(precision: str, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise EnsembleError(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
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


def _onednn_linear_ops():
    """(weight packing, packed linear) ops of PyTorch's oneDNN backend, or None where absent."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._reorder_linear_weight, torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


@contextlib.contextmanager
def packed_linears(model, device: torch.device, precision: str):
    """While inside, every ``nn.Linear`` of ``model`` runs oneDNN's matmul on a weight packed once.

    Why: on a CPU PyTorch sends an fp32 ``nn.Linear`` to MKL's sgemm, which on AMD CPUs runs at
    about half the rate oneDNN reaches (measured on 2 Zen AVX-512 cores: ~210 vs ~490 GFLOP/s),
    and a bf16 one to oneDNN with the weight re-laid out at every call (~780 vs ~970 GFLOP/s packed).
    Same arithmetic: fp32 stays fp32; for bf16 the input, weight and bias are cast to bf16 and the
    output is bf16, exactly what autocast does for a linear layer. Weights are packed on entry (so
    a model that was trained since is packed anew) and the modules are restored on exit. Nothing
    happens off the CPU, for other precisions, for compiled models or where the ops are missing;
    yields whether it patched. Costs a packed copy of the linear weights while inside.
    """
    ops = _onednn_linear_ops() if device.type == "cpu" and precision in ("fp32", "bf16") else None
    if ops is None or hasattr(model, "_orig_mod"):
        yield False
        return
    reorder, linear = ops
    dtype = torch.float32 if precision == "fp32" else torch.bfloat16
    patched = []
    try:
        seen = set()
        for mod in model.modules():
            if (type(mod) is not torch.nn.Linear or id(mod) in seen or "forward" in mod.__dict__
                    or mod.weight.device.type != "cpu" or mod.weight.dtype != torch.float32):
                continue
            seen.add(id(mod))
            with torch.no_grad():
                w = reorder(mod.weight.detach().to(dtype), None)
                b = None if mod.bias is None else mod.bias.detach().to(dtype)

            def forward(x, w=w, b=b, n=mod.out_features):
                shape = x.shape
                y = linear(x.to(dtype).reshape(-1, shape[-1]).contiguous(), w, b, "none", [], "")
                return y.view(*shape[:-1], n)
            mod.forward = forward
            patched.append(mod)
        yield bool(patched)
    finally:
        for mod in patched:
            del mod.forward


CPU_ATTENTION = "ensemble_cpu"


def _cpu_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Attention for inference on a CPU in bf16: the two products as bf16 matmuls, the softmax in fp32.

    Why: PyTorch's fused CPU attention runs these short sequences (a few dozen tokens, 32-wide
    heads) more slowly in bf16 than in fp32 (measured: SST dev batches of MiniLM, 2 AVX-512 cores,
    ~48 ms against ~27 ms per layer pass), and took a quarter of the bf16 inference time. The
    arithmetic is what SDPA's math path does with autocast, except that the scores are normalised
    in fp32 (so no precision is lost there). Anything else (fp32, training, dropout, CUDA) goes to
    transformers' own SDPA function unchanged.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if query.dtype != torch.bfloat16 or query.device.type != "cpu" or (dropout and module.training):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)).float().mul_(scale)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:   # True: attend
            scores.masked_fill_(~attention_mask, torch.finfo(torch.float32).min)
        else:                                    # additive
            scores.add_(attention_mask.float())
    probs = torch.softmax(scores, dim=-1).to(value.dtype)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None


def _register_cpu_attention() -> bool:
    """Register :func:`_cpu_attention` with transformers, with SDPA's mask format (a boolean
    mask, True where a key is attended; None where no row is padded)."""
    try:
        from transformers import AttentionInterface, AttentionMaskInterface
        from transformers.masking_utils import sdpa_mask
    except ImportError:  # pragma: no cover - transformers without the attention registries
        return False
    AttentionInterface.register(CPU_ATTENTION, _cpu_attention)
    AttentionMaskInterface.register(CPU_ATTENTION, sdpa_mask)
    return True


@contextlib.contextmanager
def cpu_attention(model, device: torch.device, precision: str):
    """While inside, ``model``'s attention layers use :func:`_cpu_attention` (CPU, bf16 only).

    Every module config that names an SDPA attention is switched and restored on exit; yields
    whether anything was switched (nothing for a compiled model).
    """
    configs = []
    if device.type == "cpu" and precision == "bf16" and not hasattr(model, "_orig_mod") and _register_cpu_attention():
        seen = set()
        for mod in [model, *model.modules()]:
            cfg = getattr(mod, "encoder_config", None) if mod is model else getattr(mod, "config", None)
            if cfg is None or id(cfg) in seen or getattr(cfg, "_attn_implementation", None) != "sdpa":
                continue
            seen.add(id(cfg))
            configs.append(cfg)
    try:
        for cfg in configs:
            cfg._attn_implementation = CPU_ATTENTION
        yield bool(configs)
    finally:
        for cfg in configs:
            cfg._attn_implementation = "sdpa"


# Token budget per inference batch when none is given. On a CPU, batches whose activations stay in
# the caches run fastest (measured with ensemble.bench on MiniLM and 2 AVX-512 cores); a GPU wants
# large batches to fill its cores.
CPU_MAX_TOKENS = 2048
CUDA_MAX_TOKENS = 16384


def default_max_tokens(device: torch.device) -> int:
    return CUDA_MAX_TOKENS if device.type == "cuda" else CPU_MAX_TOKENS


def _weights_key(model) -> tuple:
    """Changes whenever a parameter or buffer is replaced or updated in place (optimizer steps)."""
    return tuple((id(t), t._version) for t in (*model.parameters(), *model.buffers()))


def compiled(model):
    """``torch.compile(model, dynamic=True)``, made once per model and kept with it (not as a
    submodule: saving and ``modules()`` do not see it).

    On a CPU it is run with inductor's freezing (see :func:`compiled_context`): the weights become
    constants of the graph, pre-packed for oneDNN, which is what makes compiled code as fast as
    :func:`packed_linears` there (without it, fp32 linears go to MKL's sgemm at half the rate).
    Constants go stale when the weights change, so the compiled model is made anew whenever a
    parameter or buffer has been replaced or updated in place since; and since dynamo's cache of
    compiled code is keyed by code object and guarded by object identity (not by weight values, and
    a freed model's id can be reused by the next one), that cache is cleared
    (``torch._dynamo.reset()``) whenever a compiled model is made: other compiled models then
    compile again on their next call, never reuse stale constants.
    """
    key = _weights_key(model)
    entry = model.__dict__.get("_ensemble_compiled")
    if entry is None or entry[0] != key:
        torch._dynamo.reset()
        entry = (key, torch.compile(model, dynamic=True))
        model.__dict__["_ensemble_compiled"] = entry
    return entry[1]


def compiled_context(device: torch.device):
    """Inductor settings for :func:`compiled` models: freezing on a CPU, the defaults elsewhere."""
    import torch._inductor.config as inductor_config

    return inductor_config.patch(freezing=device.type == "cpu")


@torch.inference_mode()
def predict_encoded(model, enc: Encoded, device: torch.device | None = None, precision: str = "fp32",
                    max_tokens: int | None = None, progress=None, compile: bool = False) -> np.ndarray:
    """Unrounded predictions (n, k) float64 for every row of ``enc``, in ``enc``'s row order.

    ``max_tokens``: padded tokens per batch; ``None`` picks :func:`default_max_tokens` for the device.
    ``compile``: run the model through :func:`compiled` (``torch.compile``); the first batches of
    each task compile (seconds to tens of seconds), so it can pay only on large inputs; measured on
    a 2-core CPU it ran no faster than the CPU rewrites (``ensemble bench inference --compile``).
    The CPU-only rewrites (:func:`packed_linears`, :func:`cpu_attention`) are left to the compiler
    then.
    """
    device = device or next(model.parameters()).device
    device = torch.device(device)
    max_tokens = max_tokens or default_max_tokens(device)
    was_training = model.training
    model.eval()
    cuda = device.type == "cuda"
    k = model.heads[enc.task][-1].out_features
    out = np.empty((len(enc), k), dtype=np.float64)
    if len(enc) == 0:
        return out
    batches = budget_batches(enc, max_tokens=max_tokens)
    results = []
    if compile:
        runner, settings = compiled(model), [compiled_context(device)]
    else:
        runner, settings = model, [packed_linears(model, device, precision), cpu_attention(model, device, precision)]
    try:
        with autocast(device, precision), contextlib.ExitStack() as stack:
            for setting in settings:
                stack.enter_context(setting)
            for batch in batches:
                if cuda:  # pinned host memory: the copy overlaps the previous batch's compute
                    batch = batch.pin_memory()
                b = batch.to(device, non_blocking=cuda)
                try:
                    y = runner(enc.task, b.input_ids, b.attention_mask, b.token_type_ids)
                except Exception as e:
                    if not compile or isinstance(e, EnsembleError):
                        raise
                    raise EnsembleError(f"--compile: torch.compile failed on this machine ({type(e).__name__}: "
                                        f"{str(e).splitlines()[0] if str(e) else ''}); run without --compile") from e
                # stays on the device: one transfer (and one synchronisation) at the end
                results.append(outputs_to_predictions(enc.task, y))
                if progress is not None:
                    progress.advance(len(batch.rows))
    finally:
        model.train(was_training)
    rows = np.concatenate([b.rows for b in batches])
    out[rows] = torch.cat(results).double().cpu().numpy()
    return out


def predict_split(model, tokenizer, split, device=None, precision: str = "fp32", cache: TokenCache | None = None,
                  max_tokens: int | None = None, progress=None, compile: bool = False) -> tuple[list[str], np.ndarray]:
    """(ids, predictions) for a data split, ids in the file's order."""
    max_len = max_length_for(tokenizer, getattr(model, "encoder_config", None),
                             getattr(getattr(model, "config", None), "max_length", None))
    enc = cache.get(tokenizer, split, max_len) if cache is not None else encode(tokenizer, split, max_len)
    return enc.ids, predict_encoded(model, enc, device, precision, max_tokens, progress, compile)
