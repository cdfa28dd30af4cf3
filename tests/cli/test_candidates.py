"""Registry commands: remove asks (and warns when saved ensembles use the candidate), verify's exit code,
register and remove --json, register --refresh recomputes what training cached."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from fixtures_torch import copy_registry
from registry_files import crafted_copy, victim_beside

runner = CliRunner()


def test_remove_asks_unless_yes(tmp_path, registry_with_imports, invoke):
    reg = registry_with_imports
    cid = json.loads(invoke("list", "--registry", reg, "--json").output)[0]["id"]
    r = runner.invoke(app, ["remove", cid, "--registry", str(reg)], input="n\n")
    assert r.exit_code == 1 and "kept" in r.output
    r = runner.invoke(app, ["remove", cid, "--registry", str(reg), "--json"], input="n\n")
    assert r.exit_code == 1 and "kept" in r.stderr and "kept" not in r.stdout     # --json: prompt and answer on stderr
    assert "remove candidate" in r.stderr and "remove candidate" not in r.stdout
    assert len(json.loads(invoke("list", "--registry", reg, "--json").output)) == 3
    assert invoke("remove", cid, "--registry", reg, "--yes").exit_code == 0
    assert len(json.loads(invoke("list", "--registry", reg, "--json").output)) == 2


def test_remove_of_an_ensemble_member_warns_and_names_the_ensembles(registry_with_imports, invoke):
    reg = registry_with_imports
    assert invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "0", "--name", "first").exit_code == 0
    assert invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "0", "--name", "second").exit_code == 0
    member = next(iter(json.loads((reg / "ensembles" / "first.json").read_text())["tasks"]["sst"]["weights"]))
    r = runner.invoke(app, ["remove", member, "--registry", str(reg)], input="n\n")
    assert r.exit_code == 1 and "kept" in r.stdout
    assert "warning:" in r.stderr and "first, second" in r.stderr and "ensemble select" in r.stderr
    r = runner.invoke(app, ["remove", member, "--registry", str(reg), "--yes", "--json"])
    assert r.exit_code == 0 and "first, second" in r.stderr
    assert json.loads(r.stdout) == {"removed": json.loads(r.stdout)["removed"], "ensembles": ["first", "second"]}
    assert json.loads(r.stdout)["removed"]["id"] == member
    r = runner.invoke(app, ["remove", "--yes", member, "--registry", str(reg)])
    assert r.exit_code == 1 and "no candidate" in r.output


def test_remove_of_no_ensembles_member_has_no_warning(registry_with_imports, invoke):
    cid = json.loads(invoke("list", "--registry", registry_with_imports, "--json").output)[0]["id"]
    r = runner.invoke(app, ["remove", cid, "--registry", str(registry_with_imports), "--yes"])
    assert r.exit_code == 0 and "warning" not in r.output and f"removed {cid}" in r.stdout


def test_register_json_says_what_was_registered(tmp_path, fake_predictions, invoke):
    d = fake_predictions(tmp_path / "p", {"sst": 0.5, "sts": 0.5}, seed=3)
    r = runner.invoke(app, ["register", "--predictions", str(d), "--name", "mine", "--data", str(SAMPLE),
                            "--registry", str(tmp_path / "reg"), "--json"])
    assert r.exit_code == 0, r.output
    (added,) = json.loads(r.stdout)["registered"]
    assert added["name"] == "mine" and added["tasks"] == ["sst", "sts"] and set(added["dev"]) == {"sst", "sts"}
    assert [c["id"] for c in json.loads(invoke("list", "--registry", tmp_path / "reg", "--json").output)] == [added["id"]]


def test_verify_exit_code(tmp_path, registry_with_imports, invoke):
    reg = registry_with_imports
    assert invoke("verify", "--registry", reg).exit_code == 0
    victim = next((reg / "candidates").iterdir()) / "predictions" / "sst-dev.csv"
    data = bytearray(victim.read_bytes())
    data[-5] ^= 1
    victim.write_bytes(bytes(data))
    r = invoke("verify", "--registry", reg)
    assert r.exit_code == 1
    assert "predictions/sst-dev.csv" in r.output and "sha256 mismatch" in r.output


def test_inference_uses_the_training_truncation(tmp_path, tiny_base_dir, invoke):
    """A model trained with --max-length N predicts with the same truncation when it is re-run later:
    `register --refresh --force` recomputes exactly the predictions cached at training time."""
    reg = tmp_path / "reg"
    r = invoke("train", "--data", SAMPLE, "--base", tiny_base_dir, "--epochs", "1", "--max-length", "6",
               "--registry", reg, "--json")
    assert r.exit_code == 0, r.output
    (cand,) = (reg / "candidates").iterdir()
    before = {p.name: p.read_bytes() for p in (cand / "predictions").iterdir()}
    r = invoke("register", "--refresh", "--force", "--data", SAMPLE, "--registry", reg)
    assert r.exit_code == 0, r.output
    after = {p.name: p.read_bytes() for p in (cand / "predictions").iterdir()}
    assert after == before


def test_refresh_of_a_crafted_id_leaves_the_folder_outside_alone(mixed_registry, tmp_path, invoke):
    """A candidate folder copied in whose manifest says ``"id": "../../victim"`` (and is stale):
    the plain `register --refresh` leaves it out with a warning naming the folder (a damaged folder
    no longer stops every read), and `<registry>/../victim` stays."""
    reg = copy_registry(mixed_registry, tmp_path / "reg")
    model = next(d for d in sorted((reg / "candidates").iterdir())
                 if json.loads((d / "candidate.json").read_text()).get("kind", "model") == "model")
    crafted_copy(model, reg / "candidates" / "evil", "../../victim", stale=True)
    victim = victim_beside(reg)
    r = invoke("register", "--refresh", "--data", SAMPLE, "--registry", reg, "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert ("warning: candidate folder evil is damaged (candidate.json: manifest id '../../victim' is not a plain "
            "name (folder 'evil')): left out" in " ".join(r.output.split()))
    assert (victim / "keep.txt").read_text() == "precious" and (reg / "candidates" / "evil").is_dir()
    r = invoke("verify", "--registry", reg)
    assert r.exit_code == 1 and "evil: candidate.json: manifest id '../../victim' is not a plain name" in r.output


def test_one_corrupt_manifest_disables_nothing(registry_with_imports, invoke):
    reg = registry_with_imports
    ids = [c["id"] for c in json.loads(invoke("list", "--registry", reg, "--json").output)]
    bad = ids[0]
    (reg / "candidates" / bad / "candidate.json").write_text("{not json")
    r = runner.invoke(app, ["list", "--registry", str(reg), "--json"])
    assert r.exit_code == 0 and [c["id"] for c in json.loads(r.stdout)] == ids[1:]      # valid JSON, the others
    assert f"warning: candidate folder {bad} is damaged (candidate.json: not valid JSON" in r.stderr
    assert f"`ensemble remove {bad}` deletes it" in " ".join(r.stderr.split())
    assert invoke("show", ids[1], "--registry", reg).exit_code == 0
    r = invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "0")
    assert r.exit_code == 0 and f"candidate folder {bad} is damaged" in " ".join(r.output.split())
    r = invoke("verify", "--registry", reg)
    assert r.exit_code == 1 and f"{bad}: candidate.json: not valid JSON" in r.output
    r = invoke("remove", bad, "--registry", reg, "--yes")
    assert r.exit_code == 0 and f"removed {bad}" in r.stdout
    assert invoke("verify", "--registry", reg).exit_code == 0


def test_remove_refuses_when_an_ensemble_saved_after_the_warning_names_the_candidate(registry_with_imports,
                                                                                   invoke, monkeypatch):
    """What the user confirms is the list of ensembles they were warned of: one saved in between
    (a `select` racing the `remove`) makes the removal refused, naming it."""
    from ensemble.registry.store import Registry
    reg = registry_with_imports
    assert invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "0", "--name", "first").exit_code == 0
    member = next(iter(json.loads((reg / "ensembles" / "first.json").read_text())["tasks"]["sst"]["weights"]))
    doc = json.loads((reg / "ensembles" / "first.json").read_text())
    real = Registry.ensembles_naming
    calls = []

    def naming(self, cid):
        calls.append(cid)
        found = real(self, cid)
        if len(calls) == 1:                             # the warning's list is made: now a select saves
            self.save_ensemble("late", {**doc, "name": "late"})
        return found
    monkeypatch.setattr(Registry, "ensembles_naming", naming)
    r = runner.invoke(app, ["remove", member, "--registry", str(reg), "--yes"])
    assert r.exit_code == 1 and "member of the saved ensemble late: not removed" in " ".join(r.output.split())
    assert (reg / "candidates" / member).is_dir()
