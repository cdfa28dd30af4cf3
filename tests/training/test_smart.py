"""SMART: zero for a model that ignores its input, positive and differentiable, l_inf-normalised
noise, the divergence forms."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ensemble.training.smart import SmartConfig, divergence, smart_loss
from ensemble.tasks import TASKS
from ensemble.training.finetune import training_step
from fixtures_torch import ALL_TASKS, build_model, sample_batch, sample_data, tiny_base, torch_one_thread  # noqa: F401


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
