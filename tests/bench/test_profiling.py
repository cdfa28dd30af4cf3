"""ensemble.bench.profiling: the FLOP count by hand, and the profiler's rows."""
from __future__ import annotations

import pytest
import torch

from ensemble.modeling.bases import load_base
from ensemble.bench.profiling import is_linear_op, model_flops, profile_ops
from ensemble.modeling.model import ModelConfig, MultitaskModel
from fixtures_bench import tiny_model  # noqa: F401
from fixtures_torch import tiny_base  # noqa: F401


def test_model_flops_formula(tiny_model):
    model, _ = tiny_model
    h, i, n_layers = 32, 64, 2
    lengths = [3, 10]
    per_layer = sum(2 * L * (4 * h * h + 2 * h * i) + 4 * L * L * h for L in lengths)
    expected = n_layers * per_layer + 2 * (2 * h * h) + 2 * (2 * h * 5)
    assert model_flops(model, "sst", lengths) == pytest.approx(expected)
    assert model_flops(model, "para", lengths) == pytest.approx(expected - 2 * (2 * h * 4))  # 1 output
    # the linear layers alone: the attention products (4 L^2 H per layer) left out
    attention = n_layers * sum(4 * L * L * h for L in lengths)
    assert model_flops(model, "sst", lengths, attention=False) == pytest.approx(expected - attention)


def test_model_flops_counts_every_stream(tiny_base):
    base, _ = load_base(str(tiny_base), 0.1)
    h, i = 32, 64
    per_layer = 2 * 7 * (4 * h * h + 2 * h * i) + 4 * 49 * h
    cerb = MultitaskModel.from_base(ModelConfig("cerberus", ("sst", "sts"), task_layers=1), base)
    assert model_flops(cerb, "sts", [7]) == pytest.approx(2 * per_layer + 2 * h * h + 2 * h)
    base, _ = load_base(str(tiny_base), 0.1)
    static = MultitaskModel.from_base(ModelConfig("static", ("sst",)), base)   # two encoders, head on 2H
    assert model_flops(static, "sst", [7]) == pytest.approx(4 * per_layer + 2 * (2 * h * h) + 2 * 2 * h * 5)


def test_profile_ops_rows_and_linear_ops():
    w = torch.randn(64, 64)
    ops, lin = profile_ops(lambda: torch.nn.functional.linear(torch.randn(64, 64), w, torch.randn(64)).relu(),
                           torch.device("cpu"), top=2)
    assert ops[-1]["op"] == "other" and len(ops) <= 3 and sum(o["share"] for o in ops) == pytest.approx(1.0)
    assert all(o["ms"] >= 0 and o["calls"] >= 0 for o in ops)
    assert lin["op"] == "linear layers" and lin["calls"] == 1 and 0 < lin["share"] < 1
    assert is_linear_op("aten::addmm", torch.device("cpu")) and not is_linear_op("aten::relu", torch.device("cpu"))
    assert is_linear_op("sm90_xmma_gemm_bf16bf16_bf16f32", torch.device("cuda"))
    assert not is_linear_op("pytorch_flash::flash_fwd_kernel", torch.device("cuda"))
