"""The plain ``transformers`` side of the inference bench: ``AutoModelForSequenceClassification``
holding the tool model's weights, and the inputs as ``transformers.pipeline`` takes them."""
from __future__ import annotations

import torch
from transformers import AutoModelForSequenceClassification

from ..modeling.model import MultitaskModel
from ..tasks import TASKS


def sequence_classifier(model: MultitaskModel, base_path: str, task: str, device: torch.device):
    """``AutoModelForSequenceClassification`` with the tool model's encoder, pooler and head weights.

    Returns (classifier, same_weights): ``same_weights`` is False where the classifier's layout
    does not match a BERT-style encoder + pooler + linear head (the pipeline then runs the base
    weights with its own head: the same amount of work, other outputs).
    """
    k = TASKS[task].n_outputs
    clf = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=k, attn_implementation="sdpa",
                                                             use_safetensors=True)
    same = False
    enc_mod = getattr(clf, clf.base_model_prefix, None)
    head = getattr(clf, "classifier", None)
    if (model.config.architecture == "multi" and enc_mod is not None and isinstance(head, torch.nn.Linear)
            and getattr(enc_mod, "pooler", None) is not None):
        state = {}
        state.update({f"embeddings.{k_}": v for k_, v in model.embeddings["shared"].state_dict().items()})
        state.update({f"encoder.layer.{k_}": v for k_, v in model.stacks["shared"].state_dict().items()})
        state.update({f"pooler.{k_}": v for k_, v in model.poolers["shared"].state_dict().items()})
        missing, unexpected = enc_mod.load_state_dict(state, strict=False)
        missing = [m for m in missing if "position_ids" not in m and "token_type_ids" not in m]
        if not missing and not unexpected:
            with torch.no_grad():
                head.weight.copy_(model.heads[task][-1].weight)
                head.bias.copy_(model.heads[task][-1].bias)
            same = True
    return clf.to(device).eval(), same


def pipeline_inputs(split) -> list:
    """The pipeline's inputs: sentences, or ``{"text", "text_pair"}`` dicts for pair tasks."""
    if TASKS[split.task].pair:
        return [{"text": e.text_a, "text_pair": e.text_b or ""} for e in split.examples]
    return [e.text_a for e in split.examples]
