"""Training: layer-decay parameter groups, SMART, loss going down, the configuration's checks
(train() end to end, through the keeper, is in test_register.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ensemble.batches import collate, encode
from ensemble.data import read_split
from ensemble.errors import EnsembleError
from ensemble.model import task_loss
from ensemble.smart import SmartConfig, divergence, smart_loss
from ensemble.tasks import TASKS
from ensemble.train import TrainConfig, param_groups, training_step
from fixtures_torch import (  # noqa: F401
    ALL_TASKS, build_model, sample_data, tiny_base, torch_one_thread,
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


# -- SMART ---------------------------------------------------------------------------------------
def sample_batch(tok, data_dir, task, n=8):
    split = read_split(data_dir, task, "train")
    enc = encode(tok, split, 64)
    return collate(enc, np.arange(n))


class Constant(nn.Module):
    """A model that ignores its input: its outputs are one parameter row repeated."""
    def __init__(self, k):
        super().__init__()
        self.c = nn.Parameter(torch.randn(k))

    def forward_embedded(self, embs):
        return self.c.expand(embs[0].shape[0], -1)


@pytest.mark.parametrize("task", ALL_TASKS)
def test_smart_zero_for_a_model_that_ignores_its_input(task):
    torch.manual_seed(0)
    model = Constant(TASKS[task].n_outputs)
    embedded = [torch.randn(4, 6, 8, requires_grad=True)]
    clean = model.forward_embedded(embedded)
    r = smart_loss(model.forward_embedded, embedded, clean, task, SmartConfig(weight=1.0),
                   torch.Generator().manual_seed(0))
    assert r.item() == 0.0
    r.backward()                                            # differentiable, with zero gradient
    # analytically zero; float32 log-softmax leaves rounding of order 1e-8 (3e-8 was seen unseeded)
    assert model.c.grad is not None and torch.allclose(model.c.grad, torch.zeros_like(model.c.grad), atol=1e-6)


@pytest.mark.parametrize("task", ALL_TASKS)
def test_smart_positive_and_differentiable(tiny_base, sample_data, task):
    model, tok, _ = build_model(tiny_base, "multi", hidden_dropout=0.0, seed=2)
    model.eval()   # no dropout: any difference between the two passes is the noise's doing
    batch = sample_batch(tok, sample_data, task)
    calls = []
    hook = model.embeddings["shared"].register_forward_hook(lambda *a: calls.append(1))
    embedded = model.embed(task, batch.input_ids, batch.token_type_ids)
    clean = model.forward_embedded(task, embedded, batch.attention_mask)
    assert len(calls) == 1

    def fwd(embs):
        return model.forward_embedded(task, embs, batch.attention_mask)
    r = smart_loss(fwd, embedded, clean, task, SmartConfig(weight=1.0), torch.Generator().manual_seed(0))
    hook.remove()
    assert len(calls) == 1        # the perturbed passes start from the embedding output, never re-embed
    assert r.ndim == 0 and math.isfinite(r.item()) and r.item() > 0
    r.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is None or torch.isfinite(g).all() for g in grads.values())
    for prefix in ("embeddings.shared.", "stacks.shared.", f"heads.{task}."):
        assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith(prefix)), prefix
    # the perturbed side alone (clean outputs held fixed) also reaches the embedding layer:
    # the noise is added to the live embedding output, not to a detached copy
    model.zero_grad()
    embedded = model.embed(task, batch.input_ids, batch.token_type_ids)
    r2 = smart_loss(fwd, embedded, clean.detach(), task, SmartConfig(weight=1.0), torch.Generator().manual_seed(0))
    r2.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.embeddings["shared"].parameters())
    # the same value through the training step: loss + weight * R_s
    model.zero_grad()
    total, task_l = training_step(model, batch, SmartConfig(weight=2.0), torch.device("cpu"), "fp32",
                                  torch.Generator().manual_seed(0))
    assert total.item() == pytest.approx(task_l + 2.0 * r.item(), rel=1e-4)


def test_smart_noise_is_normalised_to_unit_linf_per_token():
    """The public implementations' variant: noise scaled to unit l_inf per token (not an eps-ball):
    for a linear regression model R_s is of order one, not of order sigma^2 or epsilon^2."""
    torch.manual_seed(0)
    b, t, h = 4, 5, 8
    w = torch.randn(h)

    def fwd(embs):
        return (embs[0] * w).sum(dim=(1, 2)).unsqueeze(-1)
    embedded = [torch.randn(b, t, h)]
    r = smart_loss(fwd, embedded, fwd(embedded), "sts", SmartConfig(weight=1.0), torch.Generator().manual_seed(1))
    bound = (t * w.abs().sum().item()) ** 2      # every noise entry has |x| <= 1
    assert 1e-2 < r.item() <= bound


def test_divergence_forms():
    a = torch.tensor([[0.0, 1.0, 2.0, 0.0, 0.0]])
    b = torch.tensor([[1.0, 0.0, 0.0, 0.0, 2.0]])
    pa, pb = torch.softmax(a, -1), torch.softmax(b, -1)
    sym_kl = (pa * (pa / pb).log()).sum() + (pb * (pb / pa).log()).sum()
    assert divergence("sst", a, b).item() == pytest.approx(sym_kl.item(), rel=1e-5)
    x, y = torch.tensor([[0.3]]), torch.tensor([[-1.2]])
    qx, qy = torch.sigmoid(x).item(), torch.sigmoid(y).item()
    bern = (qx * math.log(qx / qy) + (1 - qx) * math.log((1 - qx) / (1 - qy))
            + qy * math.log(qy / qx) + (1 - qy) * math.log((1 - qy) / (1 - qx)))
    assert divergence("para", x, y).item() == pytest.approx(bern, rel=1e-5)
    assert divergence("sts", x, y).item() == pytest.approx(1.5 ** 2, rel=1e-6)


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


def test_train_config_validation():
    with pytest.raises(EnsembleError, match="--layer-decay"):
        TrainConfig(layer_decay=0)
    with pytest.raises(EnsembleError, match="--embed-lr-mult"):
        TrainConfig(embed_lr_mult=-1)
    a, b = TrainConfig(seed=1), TrainConfig(seed=2)
    assert a.fingerprint({"x": "1"}) != b.fingerprint({"x": "1"}) != b.fingerprint({"x": "2"})
    assert TrainConfig(architecture="cerberus", task_layers=2, smart_weight=10).run_name == \
        "cerberus-2-sst+para+sts-smart10-s0"


