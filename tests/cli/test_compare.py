"""`ensemble compare`: configs and dev scores side by side, the rows that differ marked (bold, `*`)."""
from __future__ import annotations

import json


def test_compare_marks_differences_and_has_json(mixed_registry, invoke):
    rows = json.loads(invoke("list", "--registry", mixed_registry, "--json").output)
    rows.sort(key=lambda r: (r["kind"] != "model", -(r["lr"] or 0)))   # the lr 3e-5 run, the 1e-5 run, the import
    ids = [r["id"] for r in rows]
    r = invoke("compare", *ids[:2], "--registry", mixed_registry, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["candidates"] == ids[:2]
    by = {f["field"]: f for f in doc["fields"]}
    assert by["config lr"]["values"] == [3e-05, 1e-05] and by["config lr"]["differs"]
    assert by["config batch_size"]["differs"] is False and by["sst dev"]["values"][0] == rows[0]["dev"]["sst"]
    text = invoke("compare", *ids, "--registry", mixed_registry).stdout
    lines = {line.split("│")[2].strip(): line for line in text.splitlines() if line.count("│") > 3}
    assert lines["config lr"].split("│")[1].strip() == "*" and "3e-05" in lines["config lr"]
    assert lines["config batch_size"].split("│")[1].strip() == "*"   # the import has no config
    two = invoke("compare", *ids[:2], "--registry", mixed_registry).stdout
    batch = next(line for line in two.splitlines() if "config batch_size" in line)
    assert batch.split("│")[1].strip() == "" and f"{rows[0]['dev']['sst']:.4f}" in two


def test_compare_needs_two_and_an_existing_registry(mixed_registry, tmp_path, invoke):
    rows = json.loads(invoke("list", "--registry", mixed_registry, "--json").output)
    r = invoke("compare", rows[0]["id"], "--registry", mixed_registry)
    assert r.exit_code == 1 and "two or more" in r.output
    r = invoke("compare", "a", "b", "--registry", tmp_path / "nope")
    assert r.exit_code == 1 and "no registry here" in r.output and not (tmp_path / "nope").exists()
