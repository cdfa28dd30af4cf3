"""SMART smoothness-inducing adversarial regularisation (Jiang et al. 2020).

``R_s`` compares the model's outputs on perturbed embedding outputs with its outputs on the clean
ones: symmetric KL divergence for classification (softmax for ``sst``, a two-way Bernoulli for
``para``), squared error for regression (``sts``).

Which variant this is: the public implementations' (MT-DNN's), not the paper's projection.
1. noise ~ N(0, sigma^2) on the embedding output (after positions and LayerNorm; the encoder is
   run on it directly, never the embedding layer again);
2. ``steps`` ascent steps: g = d R_s / d noise; noise <- noise + eta * g; then each token's
   noise vector is normalised to unit l_inf norm: noise / (max_j |noise_j| + epsilon);
3. R_s on the final (detached) noise, differentiable in the model's parameters, each side of the
   symmetric KL using the other side's detached distribution as its target.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..tasks import TASKS
from .config import SmartConfig


def divergence(task: str, perturbed: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Symmetric KL (classification) or squared error (regression), averaged over the batch."""
    kind = TASKS[task].kind
    perturbed, clean = perturbed.float(), clean.float()
    if kind == "regression":
        return F.mse_loss(perturbed, clean)
    if kind == "binary":  # two-way distribution from one logit
        perturbed = torch.cat([torch.zeros_like(perturbed), perturbed], dim=-1)
        clean = torch.cat([torch.zeros_like(clean), clean], dim=-1)
    lp, lc = F.log_softmax(perturbed, dim=-1), F.log_softmax(clean, dim=-1)
    kl_pc = F.kl_div(lp, lc.detach(), log_target=True, reduction="batchmean")
    kl_cp = F.kl_div(lc, lp.detach(), log_target=True, reduction="batchmean")
    return kl_pc + kl_cp


def smart_loss(forward_embedded, embedded: list[torch.Tensor], clean_outputs: torch.Tensor,
               task: str, cfg: SmartConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """``R_s`` for one batch.

    ``forward_embedded(list_of_embedding_outputs) -> outputs`` runs the encoder and head from
    embedding outputs; ``embedded`` are the clean embedding outputs (one per stream).
    """
    noises = []
    for e in embedded:
        noise = torch.randn(e.shape, generator=generator, device="cpu", dtype=torch.float32)
        noises.append((noise.to(e.device, e.dtype) * cfg.sigma).requires_grad_(True))
    detached = [e.detach() for e in embedded]
    for _ in range(cfg.steps):
        adv = forward_embedded([d + n for d, n in zip(detached, noises)])
        r = divergence(task, adv, clean_outputs.detach())
        grads = torch.autograd.grad(r, noises, allow_unused=True)
        new = []
        for n, g in zip(noises, grads):
            g = torch.zeros_like(n) if g is None else g
            step = n.detach() + cfg.eta * g.detach()
            step = step / (step.abs().amax(dim=-1, keepdim=True) + cfg.epsilon)
            new.append(step.requires_grad_(True))
        noises = new
    adv = forward_embedded([e + n.detach() for e, n in zip(embedded, noises)])
    return divergence(task, adv, clean_outputs)
