"""Accuracy checks of the benchmarks: a plain unbatched forward to compare batched predictions
with, label agreement, and linear-probe heads fitted on a few train rows (so that agreement is
measured on a classifier with real margins rather than on a random head)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..modeling.batches import Encoded, collate, encode
from ..data import read_split
from ..errors import EnsembleError
from ..metrics import round_predictions
from ..modeling.model import MultitaskModel, outputs_to_predictions, task_loss
from ..tasks import TASKS

FP32_TOLERANCE = 1e-4        # fp32 batched vs unbatched, max abs difference of the predictions
BF16_MIN_AGREEMENT = 0.995   # bf16 vs fp32 argmax agreement on SST dev


@torch.inference_mode()
def unbatched_predictions(model: MultitaskModel, enc: Encoded, device: torch.device | str | None = None,
                          rows=None) -> np.ndarray:
    """Predictions from a plain forward pass, one input at a time, no padding (fp32, eval mode)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    rows = range(len(enc)) if rows is None else rows
    was = model.training
    model.eval()
    out = []
    try:
        for r in rows:
            ids = torch.tensor([enc.input_ids[r]], device=device)
            tt = torch.tensor([enc.token_type_ids[r]], device=device)
            y = model(enc.task, ids, torch.ones_like(ids), tt)
            out.append(outputs_to_predictions(enc.task, y).double().cpu().numpy()[0])
    finally:
        model.train(was)
    k = model.heads[enc.task][-1].out_features
    return np.array(out, dtype=np.float64).reshape(-1, k)


def predicted_labels(task: str, predictions: np.ndarray) -> np.ndarray:
    """The label each prediction row stands for, rounded as the leaderboard rounds it."""
    return round_predictions(task, predictions)


def label_agreement(task: str, a: np.ndarray, b: np.ndarray) -> float:
    """Share of rows whose predicted label is the same in ``a`` and ``b`` (regression: not defined)."""
    if TASKS[task].kind == "regression":
        raise EnsembleError("label agreement is defined for classification tasks only")
    if len(a) == 0:
        return 1.0
    return float(np.mean(predicted_labels(task, a) == predicted_labels(task, b)))


def _pooled_features(model: MultitaskModel, enc: Encoded, device: torch.device, batch: int = 64) -> torch.Tensor:
    """The head's inputs (pooled [CLS]) for every row of ``enc``, in order, fp32."""
    feats: list[torch.Tensor] = []
    hook = model.heads[enc.task].register_forward_pre_hook(lambda m, args: feats.append(args[0].detach().float().cpu()))
    try:
        with torch.inference_mode():
            for s in range(0, len(enc), batch):
                b = collate(enc, np.arange(s, min(s + batch, len(enc)))).to(device)
                model(enc.task, b.input_ids, b.attention_mask, b.token_type_ids)
    finally:
        hook.remove()
    return torch.cat(feats)


def fit_probe_head(model: MultitaskModel, enc: Encoded, device: torch.device, iters: int = 200) -> float:
    """Fit ``model.heads[task]``'s linear layer (frozen encoder) to ``enc``'s labels with L-BFGS;
    returns the training accuracy (or r for regression)."""
    task = enc.task
    x = _pooled_features(model, enc, device)
    x = x.clone()  # inference tensors cannot take part in autograd
    y = torch.from_numpy(np.asarray(enc.labels))
    lin = model.heads[task][-1]
    w = torch.zeros(lin.out_features, lin.in_features, requires_grad=True)
    b = torch.zeros(lin.out_features, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = task_loss(task, x @ w.T + b, y) + 1e-3 * (w ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    with torch.no_grad():
        lin.weight.copy_(w.detach().to(lin.weight))
        lin.bias.copy_(b.detach().to(lin.bias))
        out = (x @ w.T + b).numpy()
    if TASKS[task].kind == "regression":
        return float(np.corrcoef(out[:, 0], y.numpy())[0, 1])
    pred = out.argmax(1) if TASKS[task].kind == "classes" else (out[:, 0] > 0).astype(np.int64)
    return float(np.mean(pred == y.numpy()))


def fit_probe_heads(model: MultitaskModel, tokenizer, data_dir: Path, tasks, rows: int, max_len: int,
                    device: torch.device, progress) -> dict[str, Any]:
    """A linear probe per task on its first ``rows`` train rows (:func:`fit_probe_head`); per task
    ``rows`` and ``train_score``."""
    probe: dict[str, Any] = {}
    for t in tasks:
        progress.start(f"probe head {t}", None)
        tr = read_split(data_dir, t, "train")
        tr.examples = tr.examples[:rows]
        probe[t] = {"rows": len(tr.examples), "train_score": fit_probe_head(model, encode(tokenizer, tr, max_len), device)}
        progress.stop()
    return probe


def tool_accuracy(model: MultitaskModel, enc: Encoded, device: torch.device, results: dict[str, np.ndarray],
                  check: list[int], progress) -> dict[str, Any]:
    """The tool's fp32 predictions against :func:`unbatched_predictions` on the ``check`` rows, bf16
    against fp32 (where timed) and each compiled run against its eager precision."""
    t = enc.task
    acc: dict[str, Any] = {}
    progress.start(f"{t}: unbatched reference", None)
    ref = unbatched_predictions(model, enc, device, check)
    progress.stop()
    diff = float(np.max(np.abs(results["fp32"][check] - ref))) if check else 0.0
    acc["checked_rows"] = len(check)
    acc["fp32_max_abs_diff_unbatched"] = diff
    acc["fp32_matches_unbatched"] = diff <= FP32_TOLERANCE
    if "bf16" in results:
        acc["bf16_agreement"] = label_agreement(t, results["bf16"], results["fp32"])
        acc["bf16_max_abs_diff"] = float(np.max(np.abs(results["bf16"] - results["fp32"])))
        if t == "sst":
            acc["bf16_agreement_ok"] = acc["bf16_agreement"] >= BF16_MIN_AGREEMENT
    return acc


def pipeline_accuracy(task: str, outputs: list[dict], label2id: dict[str, int], tool: np.ndarray) -> dict[str, Any]:
    """The pipeline's default output (top label and its score per input) against the tool's fp32
    predictions: ``pipeline_agreement`` and ``pipeline_max_abs_diff``."""
    labels = np.array([label2id[o["label"]] for o in outputs], dtype=np.int64)
    scores = np.array([o["score"] for o in outputs], dtype=np.float64)
    if TASKS[task].kind == "classes":
        tool_scores = tool.max(axis=1)
        agreement = float(np.mean(labels == predicted_labels(task, tool)))
    else:
        tool_scores = tool[:, 0]
        agreement = float(np.mean((scores > 0.5) == (tool_scores > 0.5)))
    return {"pipeline_agreement": agreement, "pipeline_max_abs_diff": float(np.max(np.abs(scores - tool_scores)))}


def compiled_accuracy(results: dict[str, np.ndarray]) -> dict[str, float]:
    """``compiled-<p>_max_abs_diff``: each compiled run's predictions against the eager ones."""
    return {f"{c}_max_abs_diff": float(np.max(np.abs(results[c] - results[c.split("-", 1)[1]])))
            for c in results if c.startswith("compiled-")}
