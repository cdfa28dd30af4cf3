"""Session-scoped torch fixtures shared by the model, batches, smart, train and registry tests.

Import the fixtures by name into a test module (``from fixtures_torch import tiny_base, ...``).
A fixture imported into several modules is set up once per module by pytest, so the expensive
builds are cached here at module level: the tiny base, the saved model and the trained registry
are made once per test session (once per xdist worker).

Nothing here writes outside pytest's temporary folders; the shipped sample data is only read
(tests that change data work on copies).
"""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from ensemble.modeling.batches import collate, encode
from ensemble.data import read_split
from tiny import make_tiny_base

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "ensemble" / "sample_data"
TINY_LAYERS = 2
TINY_HIDDEN = 32
ALL_TASKS = ("sst", "para", "sts")

_CACHE: dict[str, object] = {}


@contextmanager
def one_thread():
    """The models here are tiny: extra intra-op threads only cost (OpenMP threads spin-waiting on
    a busy 2-core machine made a 14x32 matmul take 15 ms instead of 10 us). Restored afterwards so
    other test modules keep torch's default."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture(scope="module", autouse=True)
def torch_one_thread():
    """Autouse in every module that imports it: one intra-op thread while that module runs."""
    with one_thread():
        yield


def _once(key, make):
    if key not in _CACHE:
        with one_thread():
            _CACHE[key] = make()
    return _CACHE[key]


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A tiny random BertModel (2 layers, hidden 32) + fast tokenizer, written once per session."""
    return _once("base", lambda: make_tiny_base(tmp_path_factory.mktemp("tiny-base") / "base",
                                                layers=TINY_LAYERS, hidden=TINY_HIDDEN))


def fresh_base(base_dir: Path, hidden_dropout: float = 0.1):
    """A new (model, tokenizer) pair loaded from the tiny base folder (each call a fresh copy)."""
    from ensemble.modeling.bases import load_base

    return load_base(str(base_dir), hidden_dropout)


def build_model(base_dir: Path, architecture: str = "multi", task_layers: int = 0, tasks=ALL_TASKS,
                hidden_dropout: float = 0.1, seed: int = 0):
    """A MultitaskModel over a fresh copy of the tiny base; returns (model, tokenizer, base_model)."""
    import torch

    from ensemble.modeling.config import ModelConfig
    from ensemble.modeling.model import MultitaskModel

    base, tok = fresh_base(base_dir, hidden_dropout)
    torch.manual_seed(seed)
    cfg = ModelConfig(architecture, tuple(tasks), task_layers, base=str(base_dir))   # the dropout is the base's (fresh_base)
    return MultitaskModel.from_base(cfg, base), tok, base


def sample_batch(tok, data_dir, task, n=8):
    """The first ``n`` training rows of ``task`` in ``data_dir`` as one batch."""
    split = read_split(data_dir, task, "train")
    enc = encode(tok, split, 64)
    return collate(enc, np.arange(n))


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """The shipped sample course files (read only: copy before changing anything)."""
    return SAMPLE_DATA


@pytest.fixture(scope="session")
def saved_model_dir(tiny_base, tmp_path_factory) -> Path:
    """A multi model over the tiny base, saved with save_model (weights perturbed off the base)."""
    def make():
        import torch

        from ensemble.modeling.model import save_model

        model, tok, _ = build_model(tiny_base, "multi", seed=1)
        with torch.no_grad():  # move the heads away from their init so predictions are not trivial
            for p in model.heads.parameters():
                p.add_(torch.randn_like(p) * 0.5)
        out = tmp_path_factory.mktemp("saved-model") / "model"
        save_model(model, tok, out)
        return out
    return _once("saved", make)


@pytest.fixture(scope="session")
def trained(tiny_base, tmp_path_factory):
    """``train_into()`` run once: 2 epochs on the sample data, all three tasks, tiny base.

    Returns a dict with ``config``, ``result``, ``registry`` (its root), ``data`` (the data folder
    it was trained on). Read only: tests that change the registry copy it first (``copy_registry``).
    """
    def make():
        from ensemble.registry.keeper import train_into
        from ensemble.registry.store import Registry
        from ensemble.training.finetune import TrainConfig

        root = tmp_path_factory.mktemp("trained")
        data = root / "data"
        shutil.copytree(SAMPLE_DATA, data)
        cfg = TrainConfig(base=str(tiny_base), epochs=2, batch_size=8, lr=3e-3, layer_decay=0.9, seed=3)
        reg = Registry(root / "registry")
        result = train_into(reg, cfg, data, device="cpu")
        return {"config": cfg, "result": result, "registry": root / "registry", "data": data}
    return _once("trained", make)


def copy_registry(src: Path, dst: Path) -> Path:
    """A private copy of a registry folder (hard links are not kept: every file is a real copy)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def copy_data(dst: Path) -> Path:
    """A private copy of the sample data folder."""
    shutil.copytree(SAMPLE_DATA, dst)
    return dst
