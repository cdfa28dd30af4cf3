"""Training: layer-decay parameter groups, loss going down, train() end to end, atomic registration."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ensemble import register as register_mod
from ensemble import train as train_mod
from ensemble.data import read_split
from ensemble.files import file_sha256
from ensemble.errors import EnsembleError
from ensemble.metrics import score
from ensemble.model import WEIGHTS_FILE, load_model, outputs_to_predictions, task_loss
from ensemble.register import register_model
from ensemble.registry import Registry
from ensemble.tasks import TASKS
from ensemble.train import TrainConfig, param_groups, train, training_step
from fixtures_torch import (  # noqa: F401
    ALL_TASKS, build_model, copy_data, sample_batch, sample_data, saved_model_dir, tiny_base, torch_one_thread,
    trained,
)


# -- layer-wise learning-rate decay --------------------------------------------------------------
def lr_by_name(groups):
    out = {}
    for g in groups:
        for name, p in zip(g["names"], g["params"]):
            assert name not in out, f"{name} in two groups"
            out[name] = (g["lr"], g["weight_decay"], p)
    return out


def test_param_groups_learning_rates_by_hand(tiny_base):
    model = build_model(tiny_base, "multi")[0]
    assert model.n_layers == 2
    cfg = TrainConfig(lr=1e-3, layer_decay=0.5, head_lr_mult=1.5, embed_lr_mult=0.5, weight_decay=0.01)
    by_name = lr_by_name(param_groups(model, cfg))
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(v[2]) for v in by_name.values()} == trainable       # every trainable parameter once
    expected = {
        "stacks.shared.1.": 1e-3,            # top layer: the base rate
        "stacks.shared.0.": 5e-4,            # one below: times 0.5
        "embeddings.shared.": 2.5e-4 * 0.5,  # one step below the bottom layer, times embed_lr_mult
        "poolers.shared.": 1e-3,             # pooler: the base rate
        "heads.": 1.5e-3,                    # heads: base rate times head_lr_mult
    }
    seen = set()
    for name, (lr, wd, p) in by_name.items():
        prefix = next(k for k in expected if name.startswith(k))
        seen.add(prefix)
        assert lr == pytest.approx(expected[prefix], rel=1e-12), name
        no_decay = name.endswith(".bias") or "LayerNorm" in name
        assert wd == (0.0 if no_decay else 0.01), name
    assert seen == set(expected)
    assert by_name["embeddings.shared.word_embeddings.weight"][1] == 0.01
    assert by_name["stacks.shared.0.attention.output.LayerNorm.weight"][1] == 0.0


def test_param_groups_cerberus_depths(tiny_base):
    model = build_model(tiny_base, "cerberus", 1)[0]
    by_name = lr_by_name(param_groups(model, TrainConfig(lr=1e-3, layer_decay=0.5)))
    for name, (lr, _, _) in by_name.items():
        if name.startswith("stacks.shared.0."):
            assert lr == pytest.approx(5e-4)
        elif name.startswith(("stacks.sst.0.", "stacks.para.0.", "stacks.sts.0.")):
            assert lr == pytest.approx(1e-3)              # the per-task copies are the top layer
        elif name.startswith("embeddings."):
            assert lr == pytest.approx(2.5e-4)


def test_embed_lr_mult_zero_freezes_embeddings(tiny_base):
    model = build_model(tiny_base, "multi", hidden_dropout=0.0)[0]
    cfg = TrainConfig(lr=1e-2, layer_decay=0.5, embed_lr_mult=0.0)
    groups = param_groups(model, cfg)
    names = [n for g in groups for n in g["names"]]
    assert names and not any(n.startswith("embeddings.") for n in names)
    assert all(not p.requires_grad for p in model.embeddings.parameters())
    before = {k: v.clone() for k, v in model.embeddings.state_dict().items()}
    opt = torch.optim.AdamW([{k: v for k, v in g.items() if k != "names"} for g in groups])
    tok = build_model(tiny_base)[1]
    enc = tok(["the film is good ."], return_tensors="pt")
    loss = task_loss("sst", model("sst", enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]),
                     torch.tensor([3]))
    loss.backward()
    opt.step()
    after = model.embeddings.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_static_frozen_encoder_not_in_groups(tiny_base):
    model = build_model(tiny_base, "static")[0]
    names = [n for g in param_groups(model, TrainConfig()) for n in g["names"]]
    assert not any(".frozen" in n for n in names)
    assert any(n.startswith("stacks.shared.") for n in names)


# -- a few steps drive the loss down ---------------------------------------------------------------
@pytest.mark.parametrize("smart_weight", [0.0, 1.0])
@pytest.mark.parametrize("task", ALL_TASKS)
def test_loss_goes_down_on_a_fixed_batch(tiny_base, sample_data, task, smart_weight):
    model, tok, _ = build_model(tiny_base, "multi", hidden_dropout=0.0, seed=4)
    batch = sample_batch(tok, sample_data, task)
    cfg = TrainConfig(lr=5e-3, layer_decay=0.9, smart_weight=smart_weight)
    opt = torch.optim.AdamW([{k: v for k, v in g.items() if k != "names"} for g in param_groups(model, cfg)])
    gen = torch.Generator().manual_seed(0)

    def eval_loss():
        with torch.no_grad():
            model.eval()
            y = model(task, batch.input_ids, batch.attention_mask, batch.token_type_ids)
            model.train()
            return task_loss(task, y, batch.labels).item()
    start = eval_loss()
    model.train()
    for _ in range(20):
        total, _ = training_step(model, batch, cfg.smart, torch.device("cpu"), "fp32", gen)
        opt.zero_grad()
        total.backward()
        opt.step()
    end = eval_loss()
    assert end < 0.6 * start, (start, end)


# -- train() end to end ----------------------------------------------------------------------------
def test_train_registers_the_best_epochs(trained):
    res, reg = trained["result"], Registry(trained["registry"])
    cands = {c.id: c for c in reg.candidates()}
    assert sorted(cands) == sorted(res.candidates) and cands
    assert len(res.epochs) == 2
    # per task, the first epoch with the highest dev score holds it
    holder_epoch = {}
    for t in ALL_TASKS:
        scores = [e.dev[t] for e in res.epochs]
        holder_epoch[t] = 1 + int(np.argmax(scores))
    by_epoch = {c.manifest["training"]["epoch"]: c for c in cands.values()}
    assert set(by_epoch) == set(holder_epoch.values())      # exactly the epochs best for some task
    for epoch, c in by_epoch.items():
        tr = c.manifest["training"]
        assert sorted(tr["best_for"]) == sorted(t for t in ALL_TASKS if holder_epoch[t] == epoch)
        assert tr["run_complete"] is True and tr["run_id"] == res.run_id
        assert res.epochs[epoch - 1].candidate == c.id
        for t in ALL_TASKS:
            assert c.dev_metric(t) == pytest.approx(res.epochs[epoch - 1].dev[t], abs=1e-12)


def test_train_manifest_contents(trained, tiny_base):
    from safetensors import safe_open

    cfg, res, data = trained["config"], trained["result"], trained["data"]
    reg = Registry(trained["registry"])
    model = build_model(tiny_base, "multi")[0]
    for c in reg.candidates():
        m = c.manifest
        assert m["kind"] == "model" and m["architecture"] == "multi" and m["tasks"] == list(ALL_TASKS)
        assert m["parameters"] == res.parameters == model.num_parameters()
        assert m["training"]["config"] == cfg.to_dict()
        assert m["training"]["fingerprint"] == cfg.fingerprint(m["training"]["data"])
        files = sorted(p.name for p in data.glob("*.csv"))
        assert len(files) == 9 and sorted(m["training"]["data"]) == files
        for name, digest in m["training"]["data"].items():
            assert digest == file_sha256(data / name)
        assert m["name"] == f"multi-sst+para+sts-s{cfg.seed}-e{m['training']['epoch']}"
        # weights are safetensors, listed and hashed in the manifest; no pickle anywhere
        w = c.model_dir / WEIGHTS_FILE
        assert m["files"][f"model/{WEIGHTS_FILE}"]["sha256"] == file_sha256(w)
        with safe_open(str(w), framework="pt") as f:
            assert set(f.keys()) == set(model.state_dict())
        assert not [p for p in c.path.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")]
        for t in ALL_TASKS:
            assert c.has_predictions(t, "dev") and c.has_predictions(t, "test")
            assert set(m["metrics"][t]) == {"dev"}
    assert reg.verify()[1] == []


def single_forward(model, tok, task, ex):
    args = (ex.text_a, ex.text_b) if TASKS[task].pair else (ex.text_a,)
    enc = tok(*args, return_tensors="pt", truncation=True, max_length=64)
    with torch.no_grad():
        y = model(task, enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    return outputs_to_predictions(task, y).double().numpy()[0]


def test_train_round_trip_predictions_match_direct_forward(trained):
    """train -> register -> load_model: cached predictions equal unbatched forward passes."""
    data, reg = trained["data"], Registry(trained["registry"])
    for c in reg.candidates():
        model, tok = load_model(c.model_dir)
        for t in ALL_TASKS:
            for s in ("dev", "test"):
                split = read_split(data, t, s)
                ids, cached = c.predictions(t, s)
                assert sorted(ids) == sorted(split.ids)
                row = dict(zip(ids, cached))
                for ex in split.examples:
                    np.testing.assert_allclose(row[ex.id], single_forward(model, tok, t, ex), rtol=0, atol=1e-5)
                if s == "dev":
                    order = [ids.index(i) for i in split.ids]
                    assert c.dev_metric(t) == pytest.approx(score(t, cached[order], split.labels), abs=1e-12)


def test_train_removes_superseded_candidates(tiny_base, tmp_path, monkeypatch):
    """Scripted dev scores: epoch 1 best for all, epoch 2 for sst and para, epoch 3 for sts ->
    epoch 1's candidate is removed; epochs 2 and 3 stay."""
    scripted = {1: {"sst": .5, "para": .5, "sts": .5}, 2: {"sst": .6, "para": .6, "sts": .4},
                3: {"sst": .6, "para": .5, "sts": .7}}
    calls = []

    def fake_score(task, preds, labels):
        calls.append(task)
        return scripted[1 + (len(calls) - 1) // 3][task]
    monkeypatch.setattr(train_mod, "score", fake_score)
    data = copy_data(tmp_path / "data")
    reg = Registry(tmp_path / "reg")
    res = train(TrainConfig(base=str(tiny_base), epochs=3, batch_size=16, lr=1e-3, limit=8), data, reg, device="cpu")
    assert [e.best_for for e in res.epochs] == [list(ALL_TASKS), ["sst", "para"], ["sts"]]
    cands = reg.candidates()
    assert sorted(c.manifest["training"]["epoch"] for c in cands) == [2, 3]
    assert sorted(c.id for c in cands) == sorted(res.candidates)
    best = {c.manifest["training"]["epoch"]: sorted(c.manifest["training"]["best_for"]) for c in cands}
    assert best == {2: ["para", "sst"], 3: ["sts"]}
    assert not list((tmp_path / "reg" / ".trash").iterdir())


def test_train_config_validation():
    with pytest.raises(EnsembleError, match="--layer-decay"):
        TrainConfig(layer_decay=0)
    with pytest.raises(EnsembleError, match="--embed-lr-mult"):
        TrainConfig(embed_lr_mult=-1)
    a, b = TrainConfig(seed=1), TrainConfig(seed=2)
    assert a.fingerprint({"x": "1"}) != b.fingerprint({"x": "1"}) != b.fingerprint({"x": "2"})
    assert TrainConfig(architecture="cerberus", task_layers=2, smart_weight=10).run_name == \
        "cerberus-2-sst+para+sts-smart10-s0"


# -- interrupted registration ------------------------------------------------------------------------
def snapshot(root: Path):
    return sorted((p.relative_to(root).as_posix(), p.read_bytes() if p.is_file() else None)
                  for p in (root / "candidates").rglob("*"))


def write_once_then_fail(monkeypatch):
    real = register_mod.write_predictions
    written = []

    def flaky(path, *a, **k):
        if written:
            raise KeyboardInterrupt("simulated interruption")
        real(path, *a, **k)
        written.append(Path(path))
    monkeypatch.setattr(register_mod, "write_predictions", flaky)
    return written


def test_interrupted_register_model_leaves_registry_as_it_was(trained, saved_model_dir, tmp_path, monkeypatch):
    import shutil

    root = shutil.copytree(trained["registry"], tmp_path / "reg")
    reg = Registry(root)
    before = snapshot(root)
    written = write_once_then_fail(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        register_model(reg, saved_model_dir, trained["data"], device="cpu")
    assert len(written) == 1 and ".staging" in written[0].parts      # a file was written before the failure
    assert snapshot(root) == before
    assert list((root / ".staging").iterdir()) == []
    assert Registry(root).verify()[1] == []


def test_interrupted_training_registration_leaves_registry_empty(tiny_base, tmp_path, monkeypatch):
    written = write_once_then_fail(monkeypatch)
    reg = Registry(tmp_path / "reg")
    data = copy_data(tmp_path / "data")
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(base=str(tiny_base), epochs=1, batch_size=16, limit=8), data, reg, device="cpu")
    assert len(written) == 1
    assert reg.candidates() == []
    assert list((tmp_path / "reg" / "candidates").iterdir()) == []
    assert list((tmp_path / "reg" / ".staging").iterdir()) == []


def test_add_failure_after_writing_leaves_nothing(tmp_path):
    reg = Registry(tmp_path / "reg")

    def build(stage):
        (stage / "predictions").mkdir()
        (stage / "predictions" / "x.csv").write_text("id,score\n")
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        reg.add(build)
    assert reg.candidates() == [] and list((tmp_path / "reg" / ".staging").iterdir()) == []
    assert reg.verify() == ([], [])
