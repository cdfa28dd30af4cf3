"""ensembles list, show and remove: the saved ensembles, with --json, and their errors."""
from __future__ import annotations

import json

from ensemble.data import PACKAGE_SAMPLE as SAMPLE


def _select(invoke, reg, name: str, *args: str) -> dict:
    mode = () if "--mode" in args else ("--mode", "caruana")    # these tests read one mode's ensemble
    r = invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "2", "--name", name, "--json", *mode, *args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_list_shows_every_saved_ensemble(registry_with_imports, invoke):
    reg = registry_with_imports
    greedy = _select(invoke, reg, "g")
    _select(invoke, reg, "c", "--mode", "caruana", "--tasks", "sst,sts")
    r = invoke("ensembles", "list", "--registry", reg, "--json")
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert set(rows) == {"g", "c"}
    assert rows["c"]["mode"] == "caruana" and rows["c"]["tasks"] == ["sst", "sts"]
    members = {cid for t in greedy["tasks"].values() for cid in t["weights"]}
    assert rows["g"]["members"] == len(members)
    dev = [t["ensemble_dev_score"] for t in greedy["tasks"].values()]
    assert abs(rows["g"]["mean_dev"] - sum(dev) / len(dev)) < 1e-12
    assert rows["g"]["saved"]
    text = invoke("ensembles", "list", "--registry", reg).stdout
    assert "caruana" in text and f"{rows['g']['mean_dev']:.4f}" in text


def test_list_of_a_registry_without_ensembles(registry_with_imports, invoke):
    r = invoke("ensembles", "list", "--registry", registry_with_imports)
    assert r.exit_code == 0 and "no saved ensembles" in r.output
    assert json.loads(invoke("ensembles", "list", "--registry", registry_with_imports, "--json").stdout) == []


def test_show_gives_members_weights_and_the_heldout_estimate(registry_with_imports, invoke):
    reg = registry_with_imports
    sel = _select(invoke, reg, "g")
    r = invoke("ensembles", "show", "g", "--registry", reg, "--json")
    assert r.exit_code == 0, r.output
    shown = json.loads(r.stdout)
    names = {c["id"]: c["name"] for c in json.loads(invoke("list", "--registry", reg, "--json").stdout)}
    for task, entry in sel["tasks"].items():
        got = shown["tasks"][task]
        assert {m["id"]: m["weight"] for m in got["members"]} == entry["weights"]
        assert all(m["name"] == names[m["id"]] for m in got["members"])
        assert got["dev_score"] == entry["ensemble_dev_score"]
    held = next(row["heldout"] for row in sel["summary"] if row.get("heldout"))
    assert {t: e["heldout"] for t, e in shown["tasks"].items()} == held
    text = invoke("ensembles", "show", "g", "--registry", reg).stdout
    assert "ext0" in text and "held-out gain" in text


def test_show_names_a_member_no_longer_in_the_registry(registry_with_imports, invoke):
    reg = registry_with_imports
    sel = _select(invoke, reg, "g")
    gone = next(iter(sel["tasks"]["sst"]["weights"]))
    assert invoke("remove", gone, "--registry", reg, "--yes").exit_code == 0
    r = invoke("ensembles", "show", "g", "--registry", reg)
    assert r.exit_code == 0 and "(no longer in the registry)" in r.stdout


def test_remove_needs_yes_and_a_saved_name(registry_with_imports, invoke):
    reg = registry_with_imports
    _select(invoke, reg, "g")
    r = invoke("ensembles", "remove", "g", "--registry", reg, "--json")   # no --yes: asks; no answer keeps it
    assert r.exit_code == 1 and (reg / "ensembles" / "g.json").exists()
    assert r.stdout.strip() == "" and "remove saved ensemble g?" in r.stderr   # the prompt on stderr: stdout is JSON only
    r = invoke("ensembles", "remove", "../g", "--registry", reg, "--yes", "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["error"].startswith("no saved ensemble '../g'")
    r = invoke("ensembles", "remove", "g", "--registry", reg, "--yes", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["removed"] == "g" and not (reg / "ensembles" / "g.json").exists()
    assert len(json.loads(invoke("list", "--registry", reg, "--json").stdout)) == 3   # members stay


def test_a_missing_ensemble_or_registry_is_an_error(registry_with_imports, tmp_path, invoke):
    r = invoke("ensembles", "show", "nope", "--registry", registry_with_imports)
    assert r.exit_code == 1 and "no ensemble 'nope'" in r.output
    r = invoke("ensembles", "list", "--registry", tmp_path / "typo")
    assert r.exit_code == 1 and "no registry here" in r.output and not (tmp_path / "typo").exists()
