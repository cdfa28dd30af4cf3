"""ensemble.modeling.kernels: each patch computes what the unpatched code computes and is undone on exit."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from ensemble.modeling import kernels
from ensemble.modeling.bases import load_base
from ensemble.modeling.batches import budget_batches, encode
from ensemble.bench.accuracy import unbatched_predictions
from ensemble.errors import EnsembleError
from ensemble.modeling.infer import cpu_has_bf16, predict_encoded
from ensemble.modeling.model import ModelConfig, MultitaskModel
from fixtures_bench import mixed_split
from fixtures_torch import tiny_base  # noqa: F401


def test_packed_linears_same_values_and_restored(tiny_base, monkeypatch):
    base, tok = load_base(str(tiny_base), 0.1)
    model = MultitaskModel.from_base(ModelConfig("multi", ("sst", "para")), base).eval()
    enc = encode(tok, mixed_split("para", 40, seed=5), 64)
    cpu = torch.device("cpu")
    with kernels.packed_linears(model, cpu, "fp32") as patched:
        if not patched:
            pytest.skip("this torch build has no oneDNN packed linear")
        assert all("forward" in m.__dict__ for m in model.modules() if type(m) is torch.nn.Linear)
    assert not any("forward" in m.__dict__ for m in model.modules())          # restored on exit
    with monkeypatch.context() as m:
        m.setattr(kernels, "onednn_linear_ops", lambda: None)                # the plain (MKL) path
        plain = {p: predict_encoded(model, enc, cpu, p) for p in (["fp32", "bf16"] if cpu_has_bf16() else ["fp32"])}
    packed = predict_encoded(model, enc, cpu, "fp32")
    np.testing.assert_allclose(packed, plain["fp32"], atol=1e-6, rtol=0)
    if cpu_has_bf16():
        packed_bf16 = predict_encoded(model, enc, cpu, "bf16")
        assert np.max(np.abs(packed_bf16 - plain["bf16"])) < 2e-2             # both bf16 matmuls, fp32 accumulation
    # weights changed since (training between epochs): packed anew, still the plain forward's values
    with torch.no_grad():
        model.stacks["shared"][0].intermediate.dense.weight.mul_(1.5)
    np.testing.assert_allclose(predict_encoded(model, enc, cpu, "fp32"), unbatched_predictions(model, enc),
                               atol=1e-5, rtol=0)
    # restored even when the forward fails
    with pytest.raises(RuntimeError):
        with kernels.packed_linears(model, cpu, "fp32"):
            raise RuntimeError("boom")
    assert not any("forward" in m.__dict__ for m in model.modules())
    # nothing to do for other precisions or devices
    with kernels.packed_linears(model, cpu, "fp16") as patched:
        assert patched is False
    with kernels.packed_linears(model, torch.device("meta"), "fp32") as patched:
        assert patched is False


def test_cpu_attention_is_attention_with_padding_masked():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 5, 8, generator=g) for _ in range(3))
    mask = torch.ones(3, 1, 5, 5, dtype=torch.bool)
    mask[0, ..., 3:] = False                                                   # row 0: two padded keys
    module = torch.nn.Module().eval()
    # by hand in float64 from the bf16-rounded inputs: softmax(q k^T / sqrt(8)) v over the real keys
    q16, k16, v16 = (t.bfloat16() for t in (q, k, v))
    scores = q16.double() @ k16.double().transpose(-1, -2) / 8 ** 0.5
    scores = scores.masked_fill(~mask, float("-inf"))
    expected = (torch.softmax(scores, -1) @ v16.double()).transpose(1, 2)
    out, weights = kernels.cpu_attention_forward(module, q16, k16, v16, mask, scaling=8 ** -0.5)
    assert weights is None and out.dtype == torch.bfloat16 and out.shape == (3, 5, 2, 8)
    assert torch.max(torch.abs(out.double() - expected)) < 3e-2                 # bf16 rounding of p and of the output
    # padded keys take no part: changing their values changes nothing
    v2 = v16.clone()
    v2[0, :, 3:] = 100.0
    assert torch.equal(kernels.cpu_attention_forward(module, q16, k16, v2, mask, scaling=8 ** -0.5)[0], out)
    # an additive mask (0 / large negative) gives the same result as the boolean one
    additive = torch.zeros(3, 1, 5, 5).masked_fill(~mask, torch.finfo(torch.float32).min)
    assert torch.equal(kernels.cpu_attention_forward(module, q16, k16, v16, additive, scaling=8 ** -0.5)[0], out)
    # fp32 goes to transformers' SDPA function unchanged
    ref = sdpa_attention_forward(module, q, k, v, mask, scaling=8 ** -0.5)[0]
    assert torch.equal(kernels.cpu_attention_forward(module, q, k, v, mask, scaling=8 ** -0.5)[0], ref)


def test_cpu_attention_switched_only_inside_and_restored(tiny_base, monkeypatch):
    calls = []
    real = kernels.cpu_attention_forward
    monkeypatch.setattr(kernels, "cpu_attention_forward", lambda *a, **kw: calls.append(a[1].dtype) or real(*a, **kw))

    base, tok = load_base(str(tiny_base), 0.1)
    model = MultitaskModel.from_base(ModelConfig("triple", ("sst", "para")), base).eval()
    configs = {id(m.config): m.config for m in model.modules() if hasattr(getattr(m, "config", None), "_attn_implementation")}
    assert len(configs) >= 2 and all(c._attn_implementation == "sdpa" for c in configs.values())
    cpu = torch.device("cpu")
    with kernels.cpu_attention(model, cpu, "bf16") as switched:
        assert switched
        assert all(c._attn_implementation == kernels.CPU_ATTENTION for c in configs.values())
        assert model.encoder_config._attn_implementation == kernels.CPU_ATTENTION
    assert all(c._attn_implementation == "sdpa" for c in configs.values())
    with pytest.raises(RuntimeError):
        with kernels.cpu_attention(model, cpu, "bf16"):
            raise RuntimeError("boom")
    assert all(c._attn_implementation == "sdpa" for c in configs.values())
    for device, precision in ((cpu, "fp32"), (torch.device("meta"), "bf16")):
        with kernels.cpu_attention(model, device, precision) as switched:
            assert switched is False
            assert all(c._attn_implementation == "sdpa" for c in configs.values())
    # through the whole path, with padded batches: bf16 follows fp32
    enc = encode(tok, mixed_split("para", 40, seed=3), 64)
    assert any(b.attention_mask.min() == 0 for b in budget_batches(enc, max_tokens=256))
    p32 = predict_encoded(model, enc, cpu, "fp32", max_tokens=256)
    assert not calls
    p16 = predict_encoded(model, enc, cpu, "bf16", max_tokens=256)
    assert calls and set(calls) == {torch.bfloat16}                            # every layer of every stream
    assert np.max(np.abs(p16 - p32)) < 5e-2
    assert all(c._attn_implementation == "sdpa" for c in configs.values())


def test_compile_matches_eager_and_is_made_once(tiny_base, monkeypatch):
    base, tok = load_base(str(tiny_base), 0.1)
    model = MultitaskModel.from_base(ModelConfig("multi", ("sst",)), base).eval()
    enc = encode(tok, mixed_split("sst", 24, seed=4), 64)
    cpu = torch.device("cpu")
    eager = predict_encoded(model, enc, cpu, "fp32", max_tokens=128)
    made = []
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **kw: made.append(kw) or real_compile(m, **kw))
    try:
        first = predict_encoded(model, enc, cpu, "fp32", max_tokens=128, compile=True)
        np.testing.assert_allclose(first, eager, atol=1e-5, rtol=0)
        assert made == [{"dynamic": True}]
        assert kernels.COMPILED_KEY not in dict(model.named_modules())            # not saved, not a submodule
        np.testing.assert_allclose(predict_encoded(model, enc, cpu, "fp32", max_tokens=128, compile=True), eager,
                                   atol=1e-5, rtol=0)
        assert len(made) == 1                                                      # compiled once per model
        # weights frozen into the graph on a CPU: a model changed since (in place, as an optimizer does)
        # is compiled anew, and predicted correctly
        with torch.no_grad():
            model.heads["sst"][-1].weight.mul_(50.0)
        changed = predict_encoded(model, enc, cpu, "fp32", max_tokens=128)
        assert np.max(np.abs(changed - eager)) > 1e-3
        np.testing.assert_allclose(predict_encoded(model, enc, cpu, "fp32", max_tokens=128, compile=True), changed,
                                   atol=1e-5, rtol=0)
        assert len(made) == 2
        # another model of the same class (a freed model's id may be reused): its own predictions
        base2, _ = load_base(str(tiny_base), 0.1)
        torch.manual_seed(7)
        other = MultitaskModel.from_base(ModelConfig("multi", ("sst",)), base2).eval()
        own = predict_encoded(other, enc, cpu, "fp32", max_tokens=128)
        assert np.max(np.abs(own - changed)) > 1e-3
        np.testing.assert_allclose(predict_encoded(other, enc, cpu, "fp32", max_tokens=128, compile=True), own,
                                   atol=1e-5, rtol=0)
    finally:
        torch._dynamo.reset()
    # a compiler that fails (say, no C++ compiler) is a clear error, not a traceback
    def broken(*a, **kw):
        raise RuntimeError("InductorError: no working C++ compiler found")
    model.__dict__[kernels.COMPILED_KEY] = (kernels.weights_key(model), broken)
    with pytest.raises(EnsembleError, match="--compile: torch.compile failed .*no working C\\+\\+ compiler.*without --compile"):
        predict_encoded(model, enc, cpu, "fp32", compile=True)
    assert model.training is False


def test_drop_compiled_forgets_the_compiled_model(tiny_base):
    base, _ = load_base(str(tiny_base), 0.1)
    model = MultitaskModel.from_base(ModelConfig("multi", ("sst",)), base).eval()
    model.__dict__[kernels.COMPILED_KEY] = (kernels.weights_key(model), object())
    kernels.drop_compiled(model)
    assert kernels.COMPILED_KEY not in model.__dict__
