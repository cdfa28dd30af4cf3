"""ensemble.bench.training on a tiny random BERT: documented keys, sane values, the SMART floor by
hand. No timing asserts (the machine is shared)."""
from __future__ import annotations

import pytest

from ensemble.bench.training import PHASES, bench_train, smart_floor
from fixtures_torch import tiny_base  # noqa: F401

TRAIN_ROW_KEYS = {"system", "steps", "tokens", "seconds", "tokens_per_s", "step_ms", "vs_plain"}


def test_bench_train_keys(tiny_base, tiny_data):
    r = bench_train(base=str(tiny_base), data_dir=tiny_data, steps=2, batch_size=2, warmup=1)
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
    assert all(floor[k] > 0 for k in PHASES) and floor["ascent_steps"] == 1
    assert floor["floor_ratio"] == pytest.approx(smart_floor({k: floor[k] for k in PHASES})["floor_ratio"])
    assert r["smart_vs_floor"] == pytest.approx(r["smart_overhead_median"] / floor["floor_ratio"])


def test_smart_floor_by_hand():
    # F = 10, B_in = 8, B = 20, O = 2: a plain step costs 32; SMART 10 + (10 + 8) + 10 + 40 + 2 = 80
    phases = {"forward_ms": 10.0, "input_backward_ms": 8.0, "backward_ms": 20.0, "optimizer_ms": 2.0}
    assert smart_floor(phases)["floor_ratio"] == pytest.approx(80 / 32)
    # each further ascent step adds a forward and an input backward: 98 / 32
    assert smart_floor(phases, steps=2)["floor_ratio"] == pytest.approx(98 / 32)
