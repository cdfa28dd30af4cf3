"""The bench commands: selection timing, random encoders, training-step targets, and their errors."""
from __future__ import annotations

import json

from ensemble.data import PACKAGE_SAMPLE as SAMPLE


def test_bench_select_json(invoke):
    r = invoke("bench", "select", "--candidates", "20", "--rows", "500", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["candidates"] == 20 and d["rows"] == 500
    assert set(d["results"]) == {"sst/greedy", "para/greedy", "sts/greedy"}
    assert all(res["identical"] for res in d["results"].values())   # fast and plain pick the same ensemble


def test_bench_random_base(tmp_path, invoke):
    r = invoke("bench", "random-base", tmp_path / "rb", "--layers", "1", "--hidden", "32", "--heads", "2")
    assert r.exit_code == 0, r.output
    assert "ensemble bench inference --base" in r.output and (tmp_path / "rb" / "model.safetensors").is_file()
    r = invoke("bench", "random-base", tmp_path / "rb", "--layers", "1", "--hidden", "32", "--heads", "2")
    assert r.exit_code == 1 and "exists and is not an empty folder" in r.output


def test_bench_train_prints_the_targets(tiny_base_dir, invoke):
    r = invoke("bench", "train", "--data", SAMPLE, "--base", tiny_base_dir, "--steps", "2", "--batch-size", "2",
               "--no-options")
    assert r.exit_code == 0, r.output
    assert "targets" in r.output and "SMART step / plain step" in r.output and "<= 2.5" in r.output
    assert "met" in r.output and "smart_floor.floor_ratio" in r.output
    r = invoke("bench", "train", "--data", SAMPLE, "--base", tiny_base_dir, "--steps", "2", "--batch-size", "2", "--json",
               "--option-steps", "1", "--no-multi-triple")
    d = json.loads(r.stdout)                                                # the sample banner goes to stderr
    ratio = d["targets"]["SMART step / plain step"]
    assert ratio["met"] == (ratio["value"] <= 2.5) and d["smart_floor"]["floor_ratio"] > 1
    rows = {row["option"]: row for row in d["options"]["rows"]}
    from ensemble.modeling.infer import cpu_has_bf16   # lazy: torch
    assert list(rows) == ["plain step", *(["bf16 autocast"] if cpu_has_bf16() else []), "gradient accumulation x2",
                          "gradient checkpointing"]
    assert rows["plain step"]["vs_plain"] == 1.0 and rows["plain step"]["peak_vs_plain"] == 1.0
    assert all(row["tokens_per_s"] > 0 and row["peak_mb"] is not None for row in rows.values())


def test_bench_select_core_error_is_a_red_message_with_exit_1(invoke):
    """bench select runs inside the one handler too: the core's EnsembleError is a message, not a traceback."""
    r = invoke("bench", "select", "--candidates", "1", "--rows", "500")
    assert r.exit_code == 1
    assert "error: bench_select needs at least 2 candidates and 4 rows" in r.output
    r = invoke("bench", "select", "--mode", "bagging")   # a choice: click's usage error
    assert r.exit_code == 2 and "'bagging' is not one of 'greedy'," in r.output and "'both'" in r.output
