"""Helpers shared by the inference, kernel and bench tests: mixed-length splits and a tiny
``multi`` model over the tiny base. Import by name: ``from fixtures_bench import mixed_split,
tiny_model`` (with ``tiny_base`` from fixtures_torch)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ensemble.modeling.bases import load_base
from ensemble.data import Example, Split
from ensemble.modeling.model import ModelConfig, MultitaskModel

WORDS = "the film was good bad not very fun boring plot acting story ending great awful fine".split()


def mixed_split(task: str, n: int, seed: int = 0) -> Split:
    """``n`` rows of 1 to 24 random words (pairs for para and sts) with random labels."""
    rng = np.random.default_rng(seed)

    def sentence():
        return " ".join(rng.choice(WORDS, size=int(rng.integers(1, 25))))
    pair = task != "sst"
    ex = [Example(f"r{i}", sentence(), sentence() if pair else None,
                  int(rng.integers(0, 5)) if task == "sst" else (int(rng.integers(0, 2)) if task == "para"
                                                                  else float(rng.uniform(0, 5))))
          for i in range(n)]
    return Split(task=task, split="dev", path=None, sha256="x" * 64, examples=ex, skipped_empty=0)


@pytest.fixture(scope="module")
def tiny_model(tiny_base):
    """(model, tokenizer): a seeded ``multi`` model for all three tasks over the tiny base, eval mode."""
    base, tok = load_base(str(tiny_base), 0.1)
    torch.manual_seed(0)
    model = MultitaskModel.from_base(ModelConfig("multi", ("sst", "para", "sts")), base).eval()
    return model, tok
