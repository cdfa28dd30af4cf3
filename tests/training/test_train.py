"""Training: layer-decay parameter groups, loss going down, the configuration's checks
(train() end to end, through the keeper, is in test_register.py)."""
from __future__ import annotations

import pytest
import torch

from ensemble.errors import EnsembleError
from ensemble.modeling.model import task_loss
from ensemble.training.finetune import TrainConfig, param_groups, training_step
from fixtures_torch import (  # noqa: F401
    ALL_TASKS, build_model, sample_batch, sample_data, tiny_base, torch_one_thread,
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


def test_train_config_validation():
    with pytest.raises(EnsembleError, match="--layer-decay"):
        TrainConfig(layer_decay=0)
    with pytest.raises(EnsembleError, match="--embed-lr-mult"):
        TrainConfig(embed_lr_mult=-1)
    a, b = TrainConfig(seed=1), TrainConfig(seed=2)
    assert a.fingerprint({"x": "1"}) != b.fingerprint({"x": "1"}) != b.fingerprint({"x": "2"})
    assert TrainConfig(architecture="cerberus", task_layers=2, smart_weight=10).run_name == \
        "cerberus-2-sst+para+sts-smart10-s0"


