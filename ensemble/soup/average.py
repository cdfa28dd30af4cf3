"""Averaging weights and scoring the averaged model: :class:`Souper`, one per group and task set.

Every member's stored model files are checked against its manifest's sha256 before anything is
averaged (a damaged member is refused). An average is built one member at a time into a float32
running sum (members in id order, whatever the order they joined in, so a member set always gives
the same bytes), divided, cast back to each tensor's stored dtype (tensors that are not floating
point are taken from the first member) and loaded into one working model; its dev predictions come
from the tool's batched inference (:func:`ensemble.modeling.infer.predict_encoded`) over dev
tokenised once. Predictions are cached per member set: a set is run once, whichever recipe, fold
or step asks for it. A set of one is its candidate's own cached dev predictions.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from ..data import load_splits
from ..errors import EnsembleError
from ..modeling.config import CONFIG_FILE, ModelConfig
from ..modeling.infer import TokenCache, check_precision, pick_device, predict_encoded
from ..modeling.batches import max_length_for
from ..modeling.model import MultitaskModel
from ..progress import NULL, Progress
from ..registry.candidate import Candidate, check_model
from .groups import WEIGHTS


def member_tensors(cand: Candidate, keys: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The member's stored tensors named in ``keys`` (its weights' sha256 checked first)."""
    check_model(cand)
    state = load_file(str(cand.path / WEIGHTS), device="cpu")
    missing = [k for k in keys if k not in state]
    if missing:
        raise EnsembleError(f"{cand.path / WEIGHTS}: lacks {len(missing)} tensor(s) of the soup, e.g. {missing[:2]}")
    return {k: state[k] for k in keys}


def average_state(members: Sequence[Candidate], like: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The equal-weight average of the members' tensors named in ``like``: a float32 running sum
    (one member loaded at a time, in id order), divided, cast to each tensor's dtype in ``like``."""
    members = sorted(members, key=lambda c: c.id)
    total: dict[str, torch.Tensor] = {}
    for i, cand in enumerate(members):
        state = member_tensors(cand, like)
        for k, v in state.items():
            if not v.is_floating_point():
                total.setdefault(k, v.clone())
            elif i == 0:
                total[k] = v.to(torch.float32).clone()
            else:
                total[k] += v.to(torch.float32)
        del state
    n = len(members)
    return {k: (v / n).to(like[k].dtype) if v.is_floating_point() else v for k, v in total.items()}


class Souper:
    """Averaged models of one group's ``members`` for ``tasks``, scored on dev (module doc)."""

    def __init__(self, members: Sequence[Candidate], tasks: Sequence[str], data_dir: Path, device=None,
                 precision: str = "fp32", progress: Progress = NULL):
        self.members = {c.id: c for c in members}
        for c in members:   # a damaged member is refused before anything is averaged
            check_model(c)
        self.tasks = list(tasks)
        self.device = pick_device(device)
        check_precision(precision, self.device)
        self.precision, self.progress = precision, progress
        first = sorted(members, key=lambda c: c.id)[0]
        self.tokenizer = AutoTokenizer.from_pretrained(str(first.model_dir), use_fast=True, local_files_only=True)
        config = ModelConfig.from_dict(json.loads((first.model_dir / CONFIG_FILE).read_text()))
        config.tasks = tuple(t for t in config.tasks if t in self.tasks)
        self.model = MultitaskModel.from_config(config).to(self.device).eval()
        self.like = {k: v for k, v in self.model.state_dict().items()}
        self.data_dir = Path(data_dir)
        self.splits = load_splits(self.data_dir, self.tasks, ("dev", "test"))
        self.labels = {t: self.splits[(t, "dev")].labels for t in self.tasks}
        self.ids = {t: self.splits[(t, "dev")].ids for t in self.tasks}
        self.cache = TokenCache()
        self.max_len = max_length_for(self.tokenizer, self.model.encoder_config, config.max_length)
        self.singles = {cid: self._cached(c) for cid, c in self.members.items()}
        self.soups: dict[frozenset, dict[str, np.ndarray]] = {}
        self.forward_passes = 0
        self.seconds = 0.0

    def _cached(self, cand: Candidate) -> dict[str, np.ndarray]:
        out = {}
        for t in self.tasks:
            ids, values = cand.predictions(t, "dev")
            pos = {i: r for r, i in enumerate(ids)}
            missing = [i for i in self.ids[t] if i not in pos]
            if missing:
                raise EnsembleError(f"candidate {cand.id}: its cached {t} dev predictions lack row {missing[0]} of "
                                    "the dev file (stale? `ensemble register --refresh`)")
            out[t] = np.asarray(values, dtype=np.float64)[[pos[i] for i in self.ids[t]]]
        return out

    def load(self, members: Sequence[str]) -> MultitaskModel:
        """The working model holding the average of ``members``."""
        state = average_state([self.members[m] for m in members], self.like)
        self.model.load_state_dict(state)
        return self.model

    def predict(self, split) -> np.ndarray:
        """The working model's predictions for a split (tokenised once)."""
        return self.predict_with(self.model, split)

    def predict_with(self, model: MultitaskModel, split) -> np.ndarray:
        """Any model of the group on a split, through the same tokens and batched inference."""
        enc = self.cache.get(self.tokenizer, split, self.max_len)
        return predict_encoded(model, enc, self.device, self.precision)

    def soup_of(self, members: Sequence[str]) -> dict[str, np.ndarray]:
        """Dev predictions of the average of ``members`` (a set of one: its cached predictions)."""
        key = frozenset(members)
        if len(key) == 1:
            return self.singles[next(iter(key))]
        if key not in self.soups:
            t0 = time.perf_counter()
            self.progress.start(f"soup of {len(key)}: dev forward pass", sum(len(self.ids[t]) for t in self.tasks))
            self.load(sorted(key))
            self.soups[key] = {t: self.predict(self.splits[(t, "dev")]) for t in self.tasks}
            self.progress.advance(sum(len(self.ids[t]) for t in self.tasks))
            self.forward_passes += 1
            self.seconds += time.perf_counter() - t0
        return self.soups[key]
