"""ensemble.bench on a tiny random BERT: documented keys, sane values, accuracy checks that check
what they claim. No timing asserts (the machine is shared)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ensemble import bench
from ensemble.batches import budget_batches, encode
from ensemble.data import Example, Split
from ensemble.infer import cpu_has_bf16, predict_encoded
from ensemble.model import ModelConfig, MultitaskModel, load_base

from tiny import make_tiny_base

INFER_ROW_KEYS = {"input", "system", "precision", "batch", "inputs", "tokens", "seconds", "median_s", "inputs_per_s",
                  "gflops", "peak_fraction", "speedup", "peak_mib", "extra_mib"}
TRAIN_ROW_KEYS = {"system", "steps", "tokens", "seconds", "tokens_per_s", "step_ms", "vs_plain"}


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return make_tiny_base(tmp_path_factory.mktemp("tiny_base"), layers=2, hidden=32)


@pytest.fixture(scope="module")
def tiny_model(tiny_base):
    base, tok = load_base(str(tiny_base), 0.1)
    torch.manual_seed(0)
    model = MultitaskModel.from_base(ModelConfig("multi", ("sst", "para", "sts")), base).eval()
    return model, tok


WORDS = "the film was good bad not very fun boring plot acting story ending great awful fine".split()


def mixed_split(task: str, n: int, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)

    def sentence():
        return " ".join(rng.choice(WORDS, size=int(rng.integers(1, 25))))
    pair = task != "sst"
    ex = [Example(f"r{i}", sentence(), sentence() if pair else None,
                  int(rng.integers(0, 5)) if task == "sst" else (int(rng.integers(0, 2)) if task == "para"
                                                                  else float(rng.uniform(0, 5))))
          for i in range(n)]
    return Split(task=task, split="dev", path=None, sha256="x" * 64, examples=ex, skipped_empty=0)


@pytest.mark.parametrize("task", ["sst", "para", "sts"])
@pytest.mark.parametrize("max_tokens", [40, 200, 2048])
def test_predict_encoded_equals_unbatched_forward(tiny_model, task, max_tokens):
    model, tok = tiny_model
    enc = encode(tok, mixed_split(task, 60, seed=len(task)), 64)
    assert len(set(enc.lengths.tolist())) > 10                       # mixed lengths
    batches = budget_batches(enc, max_tokens)
    assert any(b.n_tokens < b.input_ids.numel() for b in batches) or max_tokens == 40  # some padding is exercised
    batched = predict_encoded(model, enc, torch.device("cpu"), "fp32", max_tokens)
    ref = bench.unbatched_predictions(model, enc)
    assert batched.shape == ref.shape == (60, model.heads[task][-1].out_features)
    np.testing.assert_allclose(batched, ref, atol=1e-5, rtol=0)


def test_unbatched_reference_is_really_one_at_a_time(tiny_model):
    """The reference runs each row alone with no padding: it matches a hand-made single forward."""
    model, tok = tiny_model
    enc = encode(tok, mixed_split("sst", 5), 64)
    ref = bench.unbatched_predictions(model, enc, rows=[3])
    ids = torch.tensor([enc.input_ids[3]])
    with torch.no_grad():
        y = torch.softmax(model("sst", ids, torch.ones_like(ids), torch.tensor([enc.token_type_ids[3]])), -1)
    np.testing.assert_allclose(ref[0], y[0].double().numpy(), atol=1e-7)


def test_label_agreement_and_labels():
    a = np.array([[0.1, 0.9, 0, 0, 0], [0.6, 0.4, 0, 0, 0], [0, 0, 0, 0.2, 0.8]])
    b = np.array([[0.2, 0.8, 0, 0, 0], [0.4, 0.6, 0, 0, 0], [0, 0, 0, 0.1, 0.9]])
    assert bench.predicted_labels("sst", a).tolist() == [1, 0, 4]
    assert bench.label_agreement("sst", a, b) == pytest.approx(2 / 3)
    assert bench.label_agreement("sst", a, a) == 1.0
    p = np.array([[0.2], [0.7], [0.51]])
    q = np.array([[0.3], [0.4], [0.9]])
    assert bench.label_agreement("para", p, q) == pytest.approx(2 / 3)
    with pytest.raises(Exception):
        bench.label_agreement("sts", p, q)


def test_model_flops_formula(tiny_model):
    model, _ = tiny_model
    h, i, n_layers = 32, 64, 2
    lengths = [3, 10]
    per_layer = sum(2 * L * (4 * h * h + 2 * h * i) + 4 * L * L * h for L in lengths)
    expected = n_layers * per_layer + 2 * (2 * h * h) + 2 * (2 * h * 5)
    assert bench.model_flops(model, "sst", lengths) == pytest.approx(expected)
    assert bench.model_flops(model, "para", lengths) == pytest.approx(expected - 2 * (2 * h * 4))  # 1 output
    # the linear layers alone: the attention products (4 L^2 H per layer) left out
    attention = n_layers * sum(4 * L * L * h for L in lengths)
    assert bench.model_flops(model, "sst", lengths, attention=False) == pytest.approx(expected - attention)


def test_model_flops_counts_every_stream(tiny_base):
    base, _ = load_base(str(tiny_base), 0.1)
    h, i = 32, 64
    per_layer = 2 * 7 * (4 * h * h + 2 * h * i) + 4 * 49 * h
    cerb = MultitaskModel.from_base(ModelConfig("cerberus", ("sst", "sts"), task_layers=1), base)
    assert bench.model_flops(cerb, "sts", [7]) == pytest.approx(2 * per_layer + 2 * h * h + 2 * h)
    base, _ = load_base(str(tiny_base), 0.1)
    static = MultitaskModel.from_base(ModelConfig("static", ("sst",)), base)   # two encoders, head on 2H
    assert bench.model_flops(static, "sst", [7]) == pytest.approx(4 * per_layer + 2 * (2 * h * h) + 2 * 2 * h * 5)


def test_matmul_peak_and_memory():
    r = bench.matmul_peak("cpu", "fp32", sizes=(64, 128), repeats=2)
    assert set(r) == {"gflops", "n", "seconds", "method", "torch_matmul_gflops", "onednn_gflops"}
    assert r["gflops"] > 0 and r["n"] in (64, 128)
    assert r["gflops"] == max(r["torch_matmul_gflops"], r["onednn_gflops"] or 0)
    with bench.PeakMemory(torch.device("cpu")) as mem:
        x = np.ones(20_000_000)  # 160 MB
        x[::4096] = 2
    del x
    assert mem.method
    assert mem.peak_mib > 0
    if "VmHWM" in mem.method:        # resettable high-water mark: the allocation shows up as extra
        assert mem.extra_mib > 100


def test_bench_inference_keys_and_accuracy(tiny_base, tiny_data):
    r = bench.bench_inference(base=str(tiny_base), data_dir=tiny_data, repeats=1, probe_rows=10,
                              matmul_sizes=(128,))
    assert {"title", "rows", "machine", "matmul", "model", "inputs", "accuracy", "memory_method",
            "load_before", "load_after", "notes", "profile", "compile_s"} <= set(r)
    prof = r["profile"]["fp32"]
    assert prof["total_ms"] > 0 and "other" in prof["share"]
    assert sum(prof["share"].values()) == pytest.approx(1.0)
    tgt = r["targets"]
    fp32_row = next(x for x in r["rows"] if x["input"] == "sst dev" and x["system"] == "ensemble predict_encoded"
                    and x["precision"] == "fp32")
    assert tgt["sst fp32 fraction of matmul peak"] == {"value": fp32_row["peak_fraction"], "target": ">= 0.85",
                                                       "met": fp32_row["peak_fraction"] >= 0.85}
    assert tgt["sst fp32 speed-up over pipeline defaults"]["value"] == fp32_row["speedup"]
    assert tgt["sst fp32 max abs diff vs unbatched"]["met"] is True
    assert not any(k.startswith("CUDA") for k in tgt)                               # a CPU run
    once = [x for x in r["rows"] if x["system"] == bench.TOKENISED_ONCE]
    assert {(x["input"], x["precision"]) for x in once} == {(x["input"], x["precision"]) for x in r["rows"]
                                                             if x["system"] == "ensemble predict_encoded"}
    assert (tgt["sst fp32 max abs diff vs unbatched"]["target"]) == "<= 0.0001"
    # the linear layers' own rate: their FLOPs over their profiled time, against the peak
    assert 0 < prof["linear_share"] < 1 and prof["linear_ms"] > 0
    assert prof["linear_gflops"] == pytest.approx(prof["linear_gflop"] / (prof["linear_ms"] / 1000))
    assert prof["linear_peak_fraction"] == pytest.approx(prof["linear_gflops"] / r["matmul"]["fp32"]["gflops"])
    assert prof["linear_gflop"] < r["inputs"]["sst"]["gflop"]
    w = torch.randn(64, 64)
    ops, lin = bench.profile_ops(lambda: torch.nn.functional.linear(torch.randn(64, 64), w, torch.randn(64)).relu(),
                                 torch.device("cpu"), top=2)
    assert ops[-1]["op"] == "other" and len(ops) <= 3 and sum(o["share"] for o in ops) == pytest.approx(1.0)
    assert all(o["ms"] >= 0 and o["calls"] >= 0 for o in ops)
    assert lin["op"] == "linear layers" and lin["calls"] == 1 and 0 < lin["share"] < 1
    assert bench.is_linear_op("aten::addmm", torch.device("cpu")) and not bench.is_linear_op("aten::relu", torch.device("cpu"))
    assert bench.is_linear_op("sm90_xmma_gemm_bf16bf16_bf16f32", torch.device("cuda"))
    assert not bench.is_linear_op("pytorch_flash::flash_fwd_kernel", torch.device("cuda"))
    systems = {(row["input"], row["system"], row["precision"], row["batch"]) for row in r["rows"]}
    for t in ("sst", "para"):
        assert (f"{t} dev", "transformers pipeline", "fp32", "1 (default)") in systems
        assert any(s[0] == f"{t} dev" and s[1] == "transformers pipeline" and s[3] == "32" for s in systems)
        assert any(s[0] == f"{t} dev" and s[1] == "ensemble predict_encoded" and s[2] == "fp32" for s in systems)
        if cpu_has_bf16():
            assert any(s[0] == f"{t} dev" and s[1] == "ensemble predict_encoded" and s[2] == "bf16" for s in systems)
    for row in r["rows"]:
        assert set(row) >= INFER_ROW_KEYS
        assert row["seconds"] > 0 and row["inputs_per_s"] > 0 and row["gflops"] > 0
        assert row["peak_fraction"] > 0 and row["speedup"] > 0 and row["peak_mib"] > 0
        if row["batch"] == "1 (default)":
            assert row["speedup"] == pytest.approx(1.0)
    assert r["inputs"]["sst"]["rows"] == 3 and r["inputs"]["para"]["rows"] == 3
    assert r["matmul"]["fp32"]["gflops"] > 0
    # gflops is FLOPs / seconds with the analytic count
    sst = next(row for row in r["rows"] if row["input"] == "sst dev")
    assert sst["gflops"] == pytest.approx(r["inputs"]["sst"]["gflop"] / sst["seconds"])
    for t in ("sst", "para"):
        acc = r["accuracy"][t]
        assert acc["fp32_matches_unbatched"] is True and acc["fp32_max_abs_diff_unbatched"] <= 1e-4
        assert acc["pipeline_agreement"] == 1.0 and acc["pipeline_max_abs_diff"] < 1e-4  # same function
        if cpu_has_bf16():
            assert 0.0 <= acc["bf16_agreement"] <= 1.0
    if cpu_has_bf16():
        assert isinstance(r["accuracy"]["sst"]["bf16_agreement_ok"], bool)


def test_bench_inference_sst_only_and_quora_limit(tiny_base, tiny_data):
    r = bench.bench_inference(base=str(tiny_base), data_dir=tiny_data, repeats=1, include_quora=False, probe_rows=0,
                              matmul_sizes=(128,), profile=False)
    assert {row["input"] for row in r["rows"]} == {"sst dev"}
    r = bench.bench_inference(base=str(tiny_base), data_dir=tiny_data, repeats=1, quora_limit=2, probe_rows=0,
                              matmul_sizes=(128,), profile=False)
    assert r["inputs"]["para"]["rows"] == 2


def test_bench_train_keys(tiny_base, tiny_data):
    r = bench.bench_train(base=str(tiny_base), data_dir=tiny_data, steps=2, batch_size=2, warmup=1)
    assert {"title", "rows", "tool_vs_plain", "smart_overhead", "batches", "precision", "machine"} <= set(r)
    assert len(r["rows"]) == 3
    for row in r["rows"]:
        assert set(row) == TRAIN_ROW_KEYS
        assert row["steps"] == 2 and row["tokens"] == r["batches"]["real_tokens"] > 0
        assert row["tokens_per_s"] > 0 and row["step_ms"] > 0
    assert r["rows"][0]["vs_plain"] == pytest.approx(1.0)
    assert r["tool_vs_plain"] == pytest.approx(r["rows"][1]["tokens_per_s"] / r["rows"][0]["tokens_per_s"])
    assert r["smart_overhead"] == pytest.approx(r["rows"][2]["seconds"] / r["rows"][1]["seconds"])
    assert r["precision"] == "fp32"
    assert r["targets"]["SMART step / plain step"] == {"value": pytest.approx(r["smart_overhead"]), "target": "<= 2.5",
                                                       "met": r["smart_overhead"] <= 2.5}
    assert r["targets"]["tool tokens/s vs plain loop"]["met"] == (r["tool_vs_plain"] >= 1)
    floor = r["smart_floor"]
    assert all(floor[k] > 0 for k in bench.PHASES) and floor["ascent_steps"] == 1
    assert floor["floor_ratio"] == pytest.approx(bench.smart_floor({k: floor[k] for k in bench.PHASES})["floor_ratio"])
    assert r["smart_vs_floor"] == pytest.approx(r["smart_overhead_median"] / floor["floor_ratio"])


def test_random_base_has_the_asked_shape_and_loads(tmp_path):
    from ensemble.errors import EnsembleError

    out = bench.make_random_base(tmp_path / "rb", layers=2, hidden=64, heads=4, intermediate=96)
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rb.")]      # no temporary folder left
    model, tok = load_base(str(out), 0.1)
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (2, 64, 4, 96)
    assert len(tok) == cfg.vocab_size == 30522                          # MiniLM's = bert-base-uncased's WordPiece
    assert tok("the film")["input_ids"] == [101, 1996, 2143, 102]
    # the default shape is BERT-base's: 12 layers, hidden 768, 12 heads, 4 x 768 = 3,072 wide (not written here)
    import inspect
    defaults = {k: v.default for k, v in inspect.signature(bench.make_random_base).parameters.items()}
    assert (defaults["layers"], defaults["hidden"], defaults["heads"], defaults["intermediate"]) == (12, 768, 12, None)
    with pytest.raises(EnsembleError, match="exists and is not an empty folder"):
        bench.make_random_base(out, layers=1, hidden=8, heads=2)
    with pytest.raises(EnsembleError, match="hidden divisible by heads"):
        bench.make_random_base(tmp_path / "bad", layers=1, hidden=10, heads=4)
    with pytest.raises(EnsembleError, match="--intermediate 0: expected positive sizes"):
        bench.make_random_base(tmp_path / "bad", layers=1, hidden=8, heads=2, intermediate=0)
    assert not (tmp_path / "bad").exists()


def test_cuda_target_only_on_cuda_from_the_tokenised_once_rows():
    def row(system, precision, frac):
        return {"input": "para dev", "system": system, "precision": precision, "peak_fraction": frac}
    rows = [row(bench.TOKENISED_ONCE, "bf16", 0.45), row(bench.TOKENISED_ONCE, "bf16", 0.30),
            row("ensemble predict_encoded", "bf16", 0.90), row(bench.TOKENISED_ONCE, "fp32", 0.95)]
    t = bench.inference_targets(rows, {}, "cuda:0")["CUDA bf16 fraction of matmul peak, tokenised once"]
    assert t == {"value": 0.45, "target": ">= 0.4", "met": True}
    assert bench.inference_targets(rows, {}, "cpu") == {}


def test_smart_floor_by_hand():
    # F = 10, B_in = 8, B = 20, O = 2: a plain step costs 32; SMART 10 + (10 + 8) + 10 + 40 + 2 = 80
    phases = {"forward_ms": 10.0, "input_backward_ms": 8.0, "backward_ms": 20.0, "optimizer_ms": 2.0}
    assert bench.smart_floor(phases)["floor_ratio"] == pytest.approx(80 / 32)
    # each further ascent step adds a forward and an input backward: 98 / 32
    assert bench.smart_floor(phases, steps=2)["floor_ratio"] == pytest.approx(98 / 32)


def test_fit_probe_head_fits_the_head(tiny_base):
    base, tok = load_base(str(tiny_base), 0.1)
    model = MultitaskModel.from_base(ModelConfig("multi", ("sst",)), base).eval()
    before = model.heads["sst"][-1].weight.detach().clone()
    split = mixed_split("sst", 80, seed=3)
    enc = encode(tok, split, 64)
    acc = bench.fit_probe_head(model, enc, torch.device("cpu"))
    assert not torch.equal(before, model.heads["sst"][-1].weight)
    # the accuracy it reports is the fitted head's, through the model's own forward
    p = predict_encoded(model, enc, torch.device("cpu"))
    assert np.mean(p.argmax(1) == enc.labels) == pytest.approx(acc, abs=1e-9)
    # and the fit lowered the cross entropy below the uniform head's log(5)
    assert -np.mean(np.log(p[np.arange(len(p)), enc.labels])) < np.log(5)


def test_packed_linears_same_values_and_restored(tiny_base):
    from ensemble import infer

    base, tok = load_base(str(tiny_base), 0.1)
    model = MultitaskModel.from_base(ModelConfig("multi", ("sst", "para")), base).eval()
    enc = encode(tok, mixed_split("para", 40, seed=5), 64)
    cpu = torch.device("cpu")
    with infer.packed_linears(model, cpu, "fp32") as patched:
        if not patched:
            pytest.skip("this torch build has no oneDNN packed linear")
        assert all("forward" in m.__dict__ for m in model.modules() if type(m) is torch.nn.Linear)
    assert not any("forward" in m.__dict__ for m in model.modules())          # restored on exit
    orig = infer._onednn_linear_ops
    try:
        infer._onednn_linear_ops = lambda: None                             # the plain (MKL) path
        plain = {p: predict_encoded(model, enc, cpu, p) for p in (["fp32", "bf16"] if cpu_has_bf16() else ["fp32"])}
    finally:
        infer._onednn_linear_ops = orig
    packed = predict_encoded(model, enc, cpu, "fp32")
    np.testing.assert_allclose(packed, plain["fp32"], atol=1e-6, rtol=0)
    if cpu_has_bf16():
        packed_bf16 = predict_encoded(model, enc, cpu, "bf16")
        assert np.max(np.abs(packed_bf16 - plain["bf16"])) < 2e-2             # both bf16 matmuls, fp32 accumulation
    # weights changed since (training between epochs): packed anew, still the plain forward's values
    with torch.no_grad():
        model.stacks["shared"][0].intermediate.dense.weight.mul_(1.5)
    np.testing.assert_allclose(predict_encoded(model, enc, cpu, "fp32"), bench.unbatched_predictions(model, enc),
                               atol=1e-5, rtol=0)
    # restored even when the forward fails
    with pytest.raises(RuntimeError):
        with infer.packed_linears(model, cpu, "fp32"):
            raise RuntimeError("boom")
    assert not any("forward" in m.__dict__ for m in model.modules())
    # nothing to do for other precisions or devices
    with infer.packed_linears(model, cpu, "fp16") as patched:
        assert patched is False
    with infer.packed_linears(model, torch.device("meta"), "fp32") as patched:
        assert patched is False


def test_cpu_attention_is_attention_with_padding_masked():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from ensemble import infer

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
    out, weights = infer._cpu_attention(module, q16, k16, v16, mask, scaling=8 ** -0.5)
    assert weights is None and out.dtype == torch.bfloat16 and out.shape == (3, 5, 2, 8)
    assert torch.max(torch.abs(out.double() - expected)) < 3e-2                 # bf16 rounding of p and of the output
    # padded keys take no part: changing their values changes nothing
    v2 = v16.clone()
    v2[0, :, 3:] = 100.0
    assert torch.equal(infer._cpu_attention(module, q16, k16, v2, mask, scaling=8 ** -0.5)[0], out)
    # an additive mask (0 / large negative) gives the same result as the boolean one
    additive = torch.zeros(3, 1, 5, 5).masked_fill(~mask, torch.finfo(torch.float32).min)
    assert torch.equal(infer._cpu_attention(module, q16, k16, v16, additive, scaling=8 ** -0.5)[0], out)
    # fp32 goes to transformers' SDPA function unchanged
    ref = sdpa_attention_forward(module, q, k, v, mask, scaling=8 ** -0.5)[0]
    assert torch.equal(infer._cpu_attention(module, q, k, v, mask, scaling=8 ** -0.5)[0], ref)


def test_cpu_attention_switched_only_inside_and_restored(tiny_base, monkeypatch):
    from ensemble import infer

    calls = []
    real = infer._cpu_attention
    monkeypatch.setattr(infer, "_cpu_attention", lambda *a, **kw: calls.append(a[1].dtype) or real(*a, **kw))

    base, tok = load_base(str(tiny_base), 0.1)
    model = MultitaskModel.from_base(ModelConfig("triple", ("sst", "para")), base).eval()
    configs = {id(m.config): m.config for m in model.modules() if hasattr(getattr(m, "config", None), "_attn_implementation")}
    assert len(configs) >= 2 and all(c._attn_implementation == "sdpa" for c in configs.values())
    cpu = torch.device("cpu")
    with infer.cpu_attention(model, cpu, "bf16") as switched:
        assert switched
        assert all(c._attn_implementation == infer.CPU_ATTENTION for c in configs.values())
        assert model.encoder_config._attn_implementation == infer.CPU_ATTENTION
    assert all(c._attn_implementation == "sdpa" for c in configs.values())
    with pytest.raises(RuntimeError):
        with infer.cpu_attention(model, cpu, "bf16"):
            raise RuntimeError("boom")
    assert all(c._attn_implementation == "sdpa" for c in configs.values())
    for device, precision in ((cpu, "fp32"), (torch.device("meta"), "bf16")):
        with infer.cpu_attention(model, device, precision) as switched:
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
    from ensemble import infer
    from ensemble.errors import EnsembleError

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
        assert "_ensemble_compiled" not in dict(model.named_modules())           # not saved, not a submodule
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
    model.__dict__["_ensemble_compiled"] = (infer._weights_key(model), broken)
    with pytest.raises(EnsembleError, match="--compile: torch.compile failed .*no working C\\+\\+ compiler.*without --compile"):
        predict_encoded(model, enc, cpu, "fp32", compile=True)
    assert model.training is False


def test_predict_encoded_keeps_input_order_and_train_mode(tiny_model):
    model, tok = tiny_model
    enc = encode(tok, mixed_split("sst", 30, seed=9), 64)
    model.train()
    try:
        full = predict_encoded(model, enc, torch.device("cpu"))
        assert model.training                                                 # mode restored
    finally:
        model.eval()
    # row i of the output is row i of the input, whatever the batching
    for i in (0, 7, 29):
        one = bench.unbatched_predictions(model, enc, rows=[i])[0]
        np.testing.assert_allclose(full[i], one, atol=1e-5)
    assert predict_encoded(model, encode(tok, mixed_split("sst", 0), 64)).shape == (0, 5)
