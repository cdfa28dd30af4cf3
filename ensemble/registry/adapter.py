"""The course's model interface, logged in one call: :func:`log_course_model`.

A student's ``MultitaskBERT`` (the default final project's ``multitask_classifier.py``) has

* ``predict_sentiment(input_ids, attention_mask)`` -> ``(batch, 5)`` logits,
* ``predict_paraphrase(input_ids_1, attention_mask_1, input_ids_2, attention_mask_2)`` -> ``(batch, 1)`` logit,
* ``predict_similarity(...the same four...)`` -> ``(batch, 1)`` score.

The adapter reads dev and test of the three tasks as the course's loader does (this package's
reader matches it row for row: same sentences, same preprocessing, same ids), tokenizes each batch
as the course's ``SentenceClassificationDataset`` / ``SentencePairDataset`` do (the student's
tokenizer called on the batch's sentences with ``return_tensors='pt', padding=True,
truncation=True``; the two sentences of a pair separately), runs the model in eval mode under
``torch.no_grad()``, keeps the outputs unrounded and hands them to :func:`log_candidate` as logits.
The model's train/eval mode is restored afterwards. torch is imported only when it runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data import Split, read_split
from ..errors import EnsembleError
from ..tasks import TASK_NAMES
from .home import data_for
from .logged import DATA_ENV, REGISTRY_ENV, LOG_SPLITS, log_candidate
from .store import Registry

METHODS = {"sst": "predict_sentiment", "para": "predict_paraphrase", "sts": "predict_similarity"}


def log_course_model(name: str, model: Any, tokenizer: Any, device: Any = "cpu", *, registry: str | Path | None = None,
                     data: str | Path | None = None, batch_size: int = 64, tasks=TASK_NAMES, add: bool = False,
                     again: bool = False, parameters: int | None = None) -> str:
    """Run ``model`` (the course's interface) over dev and test of ``tasks`` and log one candidate;
    returns its id. ``registry`` and ``data`` default as :func:`log_candidate`'s; ``parameters``
    defaults to the model's parameter count."""
    import os

    lacking = [METHODS[t] for t in tasks if not callable(getattr(model, METHODS[t], None))]
    if lacking:
        raise EnsembleError(f"the model {type(model).__name__} has no {', '.join(lacking)}; expected the course's "
                            "MultitaskBERT interface (predict_sentiment, predict_paraphrase, predict_similarity)")
    if batch_size < 1:
        raise EnsembleError(f"batch_size={batch_size}: expected a positive number of rows per batch")
    reg = Registry(registry if registry is not None else os.environ.get(REGISTRY_ENV) or "checkpoints")
    given = data if data is not None else os.environ.get(DATA_ENV) or None
    folder = data_for(reg, None if given is None else Path(given)).folder
    outputs = course_outputs(model, tokenizer, device, folder, batch_size, tasks)
    if parameters is None and hasattr(model, "parameters"):
        parameters = sum(p.numel() for p in model.parameters()) or None
    return log_candidate(name, outputs, registry=reg.root, data=folder, kind="logits", add=add, again=again,
                         parameters=parameters)


def course_outputs(model: Any, tokenizer: Any, device: Any, folder: Path, batch_size: int = 64,
                   tasks=TASK_NAMES) -> dict[str, dict[str, tuple[list[str], Any]]]:
    """task -> split -> (ids, unrounded outputs as a float64 array) of the course's model."""
    import torch  # lazy: only when a model runs

    was_training = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.no_grad():
            return {t: {s: _run(model, tokenizer, device, read_split(folder, t, s), batch_size) for s in LOG_SPLITS}
                    for t in tasks}
    finally:
        if was_training and hasattr(model, "train"):
            model.train()


def _encode(tokenizer: Any, sentences: list[str], device: Any) -> tuple[Any, Any]:
    """The course's tokenization of one batch: ids and attention mask as LongTensors on ``device``."""
    import torch

    enc = tokenizer(sentences, return_tensors="pt", padding=True, truncation=True)
    return (torch.as_tensor(enc["input_ids"], dtype=torch.long).to(device),
            torch.as_tensor(enc["attention_mask"], dtype=torch.long).to(device))


def _run(model: Any, tokenizer: Any, device: Any, split: Split, batch_size: int) -> tuple[list[str], Any]:
    """One split through the task's ``predict_*`` method in batches, outputs kept unrounded."""
    import numpy as np

    method = getattr(model, METHODS[split.task])
    out = []
    for a in range(0, len(split), batch_size):
        rows = split.examples[a:a + batch_size]
        first = _encode(tokenizer, [e.text_a for e in rows], device)
        if split.task == "sst":
            y = method(*first)
        else:
            y = method(*first, *_encode(tokenizer, [e.text_b for e in rows], device))
        out.append(y.detach().float().cpu().numpy().reshape(len(rows), -1))
    values = np.concatenate(out).astype(np.float64) if out else np.zeros((0, 5 if split.task == "sst" else 1))
    return split.ids, values
