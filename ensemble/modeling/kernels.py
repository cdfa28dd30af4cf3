"""Everything that patches torch or transformers for speed, each patch a context manager that
restores what it changed.

:func:`packed_linears`
    ``nn.Linear`` layers run oneDNN's matmul on weights packed once (CPU, fp32/bf16).
:func:`cpu_attention`
    attention layers use :func:`cpu_attention_forward` (CPU, bf16): bf16 products, fp32 softmax.
:func:`compiled` / :func:`compiled_context`
    ``torch.compile`` made once per model (anew when its weights change), run under inductor's
    freezing on a CPU.

Measured with :mod:`ensemble.bench`.
"""
from __future__ import annotations

import contextlib

import torch

CPU_ATTENTION = "ensemble_cpu"
COMPILED_KEY = "_ensemble_compiled"   # where a model keeps its compiled twin (in __dict__: not a submodule)


def onednn_linear_ops():
    """(weight packing, packed linear) ops of PyTorch's oneDNN backend, or None where absent."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._reorder_linear_weight, torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


def _packed_forward(mod: torch.nn.Linear, reorder, linear, dtype: torch.dtype):
    """A forward for ``mod`` that runs ``linear`` on its weight packed once by ``reorder``."""
    with torch.no_grad():
        w = reorder(mod.weight.detach().to(dtype), None)
        b = None if mod.bias is None else mod.bias.detach().to(dtype)

    def forward(x, w=w, b=b, n=mod.out_features):
        shape = x.shape
        y = linear(x.to(dtype).reshape(-1, shape[-1]).contiguous(), w, b, "none", [], "")
        return y.view(*shape[:-1], n)
    return forward


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
    ops = onednn_linear_ops() if device.type == "cpu" and precision in ("fp32", "bf16") else None
    if ops is None or hasattr(model, "_orig_mod"):
        yield False
        return
    dtype = torch.float32 if precision == "fp32" else torch.bfloat16
    patched = []
    try:
        seen = set()
        for mod in model.modules():
            if (type(mod) is not torch.nn.Linear or id(mod) in seen or "forward" in mod.__dict__
                    or mod.weight.device.type != "cpu" or mod.weight.dtype != torch.float32):
                continue
            seen.add(id(mod))
            mod.forward = _packed_forward(mod, *ops, dtype)
            patched.append(mod)
        yield bool(patched)
    finally:
        for mod in patched:
            del mod.forward


def cpu_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Attention for inference on a CPU in bf16: the two products as bf16 matmuls, the softmax in fp32.

    Why: PyTorch's fused CPU attention runs these short sequences (a few dozen tokens, 32-wide
    heads) more slowly in bf16 than in fp32 (measured: SST dev batches of MiniLM, 2 AVX-512 cores,
    ~48 ms against ~27 ms per layer pass), and took a quarter of the bf16 inference time. The
    arithmetic is what SDPA's math path does with autocast, except that the scores are normalised
    in fp32 (so no precision is lost there). Anything else (fp32, training, dropout, CUDA) goes to
    transformers' own SDPA function unchanged.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward  # lazy: transformers is slow to import

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
    """Register :func:`cpu_attention_forward` with transformers under :data:`CPU_ATTENTION`, with
    SDPA's mask format (a boolean mask, True where a key is attended; None where no row is padded).
    This adds a name to transformers' registries and changes no existing entry, so it is left there."""
    try:
        from transformers import AttentionInterface, AttentionMaskInterface  # lazy: transformers is slow to import
        from transformers.masking_utils import sdpa_mask  # lazy: transformers is slow to import
    except ImportError:  # pragma: no cover - transformers without the attention registries
        return False
    AttentionInterface.register(CPU_ATTENTION, cpu_attention_forward)
    AttentionMaskInterface.register(CPU_ATTENTION, sdpa_mask)
    return True


@contextlib.contextmanager
def cpu_attention(model, device: torch.device, precision: str):
    """While inside, ``model``'s attention layers use :func:`cpu_attention_forward` (CPU, bf16 only).

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


def weights_key(model) -> tuple:
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
    key = weights_key(model)
    entry = model.__dict__.get(COMPILED_KEY)
    if entry is None or entry[0] != key:
        torch._dynamo.reset()
        entry = (key, torch.compile(model, dynamic=True))
        model.__dict__[COMPILED_KEY] = entry
    return entry[1]


def drop_compiled(model) -> None:
    """Forget ``model``'s compiled twin and dynamo's cache of compiled code."""
    model.__dict__.pop(COMPILED_KEY, None)
    torch._dynamo.reset()


def compiled_context(device: torch.device):
    """Inductor settings for :func:`compiled` models: freezing on a CPU, the defaults elsewhere
    (``inductor_config.patch`` restores them on exit)."""
    import torch._inductor.config as inductor_config  # lazy: about 1 s to import, and only --compile needs it

    return inductor_config.patch(freezing=device.type == "cpu")
