"""ensemble.bench.inference on a tiny random BERT: documented keys, sane values, accuracy checks
that check what they claim. No timing asserts (the machine is shared)."""
from __future__ import annotations

import pytest

from ensemble.bench.inference import bench_inference
from ensemble.bench.targets import TOKENISED_ONCE
from ensemble.modeling.infer import cpu_has_bf16
from fixtures_torch import tiny_base  # noqa: F401

INFER_ROW_KEYS = {"input", "system", "precision", "batch", "inputs", "tokens", "seconds", "median_s", "inputs_per_s",
                  "gflops", "peak_fraction", "speedup", "peak_mib", "extra_mib"}


def test_bench_inference_keys_and_accuracy(tiny_base, tiny_data):
    r = bench_inference(base=str(tiny_base), data_dir=tiny_data, repeats=1, probe_rows=10,
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
    once = [x for x in r["rows"] if x["system"] == TOKENISED_ONCE]
    assert {(x["input"], x["precision"]) for x in once} == {(x["input"], x["precision"]) for x in r["rows"]
                                                             if x["system"] == "ensemble predict_encoded"}
    assert (tgt["sst fp32 max abs diff vs unbatched"]["target"]) == "<= 0.0001"
    # the linear layers' own rate: their FLOPs over their profiled time, against the peak
    assert 0 < prof["linear_share"] < 1 and prof["linear_ms"] > 0
    assert prof["linear_gflops"] == pytest.approx(prof["linear_gflop"] / (prof["linear_ms"] / 1000))
    assert prof["linear_peak_fraction"] == pytest.approx(prof["linear_gflops"] / r["matmul"]["fp32"]["gflops"])
    assert prof["linear_gflop"] < r["inputs"]["sst"]["gflop"]
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
    r = bench_inference(base=str(tiny_base), data_dir=tiny_data, repeats=1, include_quora=False, probe_rows=0,
                        matmul_sizes=(128,), profile=False)
    assert {row["input"] for row in r["rows"]} == {"sst dev"}
    r = bench_inference(base=str(tiny_base), data_dir=tiny_data, repeats=1, quora_limit=2, probe_rows=0,
                        matmul_sizes=(128,), profile=False)
    assert r["inputs"]["para"]["rows"] == 2
