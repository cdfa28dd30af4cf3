"""The stumbling points, through the CLI: --base names resolved at once offline, select saying why
nothing was selected, read-only commands never making a registry, predict naming a lost member, the
same predictions registered twice, and a damaged cached prediction file."""
from __future__ import annotations

import shutil

import pytest
from huggingface_hub import constants as hf_constants

from ensemble.modeling import bases
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.registry.store import Registry

NO_REGISTRY = "{}: no registry here (expected a folder made by `ensemble train` or `ensemble register`)"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No hub: the connection check answers False (no socket opened) and the HF cache is empty."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(bases, "hub_reachable", lambda timeout=1.0: False)


@pytest.mark.parametrize("base, message", [
    ("minilm2", "--base minilm2: not a local folder, not in the Hugging Face cache, and the hub cannot be reached "
                "(offline). Did you mean minilm? Pass a local model folder, or use --base minilm (the offline MiniLM "
                "stand-in, installed)"),
    ("bert-base-uncased", "--base bert-base-uncased: not a local folder, not in the Hugging Face cache, and the hub "
                          "cannot be reached (offline). Pass a local model folder, or use --base minilm (the offline "
                          "MiniLM stand-in, installed)"),
    ("./my_model", "--base ./my_model: no such folder"),
])
def test_train_with_an_unknown_base_says_what_to_do_at_once(offline, invoke, tmp_path, base, message):
    r = invoke("train", "--data", SAMPLE, "--base", base, "--tasks", "sst", "--epochs", "1",
               "--registry", tmp_path / "reg")
    assert r.exit_code == 1 and f"error: {message}\n" in r.output, r.output
    assert "Retrying" not in r.output and not (tmp_path / "reg").exists()      # no registry made by a failed train


@pytest.mark.parametrize("command", [("list",), ("show", "abc"), ("verify",), ("select", "--data", SAMPLE),
                                     ("predict", "--data", SAMPLE, "--out", "out")])
def test_read_only_commands_never_create_a_registry(invoke, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    r = invoke(*command, "--registry", "chekpoints")
    assert r.exit_code == 1 and f"error: {NO_REGISTRY.format('chekpoints')}\n" in r.output, r.output
    assert not (tmp_path / "chekpoints").exists() and not (tmp_path / "out").exists()


def test_select_after_switching_data_names_the_stale_candidates(registry_with_imports, invoke, tmp_path):
    data = shutil.copytree(SAMPLE, tmp_path / "data")
    sts = data / "sts-dev.csv"
    sts.write_text(sts.read_text().replace("pasta.\t5.0", "pasta.\t4.5", 1))
    r = invoke("select", "--data", data, "--registry", registry_with_imports)
    assert r.exit_code == 1   # the registry records the sample: the other folder is named, nothing else said
    assert " ".join(r.output.split()).startswith(f"error: these candidates were made from {SAMPLE.resolve()}; you "
                                                 f"passed --data {data}, whose sts-dev.csv differs: did you mean")
    (registry_with_imports / "registry.json").unlink()   # a registry from before the record: each candidate is stale
    r = invoke("select", "--data", data, "--registry", registry_with_imports)
    assert r.exit_code == 1
    ids = [c.id for c in Registry(registry_with_imports).candidates()]
    assert "error: no task has candidates with dev predictions; nothing to select\n" in r.output
    for cid in ids:
        assert (f"  candidate {cid} has stale cached predictions (sts-dev (sts-dev.csv changed)): left out; "
                "re-export them from the code that made them and register them again") in r.output


def test_predict_after_a_member_was_removed_says_to_select_again(registry_with_imports, invoke, tmp_path):
    reg = registry_with_imports
    assert invoke("select", "--data", SAMPLE, "--registry", reg, "--name", "mine").exit_code == 0
    doc = Registry(reg).load_ensemble("mine")
    gone = doc["tasks"]["sst"]["members"][0]
    assert invoke("remove", gone, "--yes", "--registry", reg).exit_code == 0
    r = invoke("predict", "--data", SAMPLE, "--registry", reg, "--out", tmp_path / "out", "--ensemble", "mine")
    tasks = ", ".join(t for t in ("sst", "para", "sts") if gone in doc["tasks"][t]["weights"])
    assert r.exit_code == 1
    assert (f"error: ensemble mine lost member {gone} ({tasks}): removed from {reg}; run `ensemble select` again "
            "to choose from the candidates left\n") in r.output, r.output


def test_registering_the_same_predictions_twice_is_refused(invoke, fake_predictions, tmp_path):
    d = fake_predictions(tmp_path / "p", {"sst": 0.5, "para": 0.5, "sts": 0.5}, seed=0)
    reg = tmp_path / "reg"
    args = ("register", "--predictions", d, "--name", "starter", "--data", SAMPLE, "--registry", reg)
    assert invoke(*args).exit_code == 0
    (first,) = Registry(reg).candidates()
    r = invoke(*args)
    assert r.exit_code == 1
    assert (f"error: --predictions {d}: already registered as candidate {first.id} (starter), same content "
            "(sha256); nothing added (`ensemble register --again` adds a second copy)\n") in r.output, r.output
    assert len(Registry(reg).candidates()) == 1
    assert invoke("show", "starter", "--registry", reg).exit_code == 0           # not ambiguous
    r = invoke(*args, "--again")                                                    # asked for: a second copy
    assert r.exit_code == 0, r.output
    assert len(Registry(reg).candidates()) == 2


def test_a_damaged_prediction_file_leaves_one_candidate_out_of_select(registry_with_imports, invoke):
    reg = registry_with_imports
    bad = Registry(reg).candidates()[1]
    f = bad.path / "predictions" / "para-dev.csv"
    lines = f.read_text().splitlines(keepends=True)
    lines[2] = lines[2].split(",")[0] + ",not-a-number\n"
    f.write_text("".join(lines))
    r = invoke("select", "--data", SAMPLE, "--registry", reg, "--name", "without")
    assert r.exit_code == 0, r.output
    assert f"para: candidate {bad.id} left out: its cached dev predictions are damaged ({f}: sha256 " in r.output
    assert "recorded in the candidate's manifest: the file changed after it was stored" in r.output
    assert "`ensemble verify` checks every stored file" in r.output
    assert bad.id not in Registry(reg).load_ensemble("without")["tasks"]["para"]["weights"]
