"""``ensemble bench honesty``: the simulation table and JSON with tiny replication counts, and the
real check on imported candidates."""
from __future__ import annotations

import json

from ensemble.data import PACKAGE_SAMPLE as SAMPLE


def test_simulation_json_and_table(invoke):
    args = ("bench", "honesty", "--replications", "2", "--scenarios", "sts-m8-narrow", "--modes", "greedy,caruana")
    r = invoke(*args, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)          # a sample banner goes to stderr
    assert doc["replications"] == 2 and [row["mode"] for row in doc["rows"]] == ["greedy", "caruana"]
    assert doc["rows"][0]["scenario"] == "sts-m8-narrow" and "Nadeau-Bengio" in doc["interval"]
    again = invoke(*args, "--json")
    assert json.loads(again.stdout) == doc
    t = invoke(*args)
    assert t.exit_code == 0, t.output
    assert "Nadeau-Bengio" in t.output and "sts-m8-narrow" in t.output and "mean true gain: greedy" in t.output


def test_unknown_scenario_is_an_error(invoke):
    r = invoke("bench", "honesty", "--replications", "2", "--scenarios", "nope")
    assert r.exit_code == 1 and "unknown or no scenario" in r.output


def test_real_check(invoke, registry_with_imports):
    args = ("bench", "honesty", "--registry", registry_with_imports, "--data", SAMPLE, "--splits", "2",
            "--modes", "greedy,bagged")
    r = invoke(*args, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)          # a sample banner goes to stderr
    assert doc["splits"] == 2 and doc["holdout"] == 0.3
    assert [(row["task"], row["mode"]) for row in doc["rows"]] == [
        (t, m) for t in ("sst", "para", "sts") for m in ("greedy", "bagged")]
    t = invoke(*args)
    assert t.exit_code == 0 and "held-out gain on real candidates" in t.output
    assert all(f"{row['mean_gain']:+.4f}" in t.output for row in doc["rows"])   # every number whole
