"""The course's model interface logged in one call (the lines the guide tells a student to add, run
here against a tiny random class with exactly that interface), and ``register --refresh`` asking
before it replaces more than one candidate's predictions or moves a registry onto other data."""
from __future__ import annotations

import os
import re
import shutil
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.cli import candidates as candidates_cli
from ensemble.data import PACKAGE_SAMPLE, read_split
from ensemble.registry.register import register_model
from ensemble.registry.store import Registry
from fixtures_torch import saved_model_dir, tiny_base, torch_one_thread  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "guides" / "bring-your-own-model.md"
PIPED_ENV = {"COLUMNS": "200", "LINES": None, "TTY_COMPATIBLE": None, "FORCE_COLOR": None,
             "ENSEMBLE_REGISTRY": None, "ENSEMBLE_DATA": None}


def invoke(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=PIPED_ENV, input=input, catch_exceptions=False)


class MultitaskBERT(nn.Module):
    """The course's interface, nothing else: an embedding bag and three heads (no transformers)."""

    def __init__(self, vocab: int, hidden: int = 16):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.dropout = nn.Dropout(0.5)   # active in train mode: the adapter must switch to eval
        self.sentiment = nn.Linear(hidden, 5)
        self.paraphrase = nn.Linear(2 * hidden, 1)
        self.similarity = nn.Linear(2 * hidden, 1)
        self.calls: list[tuple[str, tuple[int, ...], bool, bool]] = []

    def _pool(self, input_ids, attention_mask):
        e = self.dropout(self.embed(input_ids)) * attention_mask.unsqueeze(-1)
        return e.sum(1) / attention_mask.sum(1, keepdim=True)

    def _seen(self, what, ids):
        self.calls.append((what, tuple(ids.shape), self.training, torch.is_grad_enabled()))

    def predict_sentiment(self, input_ids, attention_mask):
        self._seen("sst", input_ids)
        return self.sentiment(self._pool(input_ids, attention_mask))

    def predict_paraphrase(self, input_ids_1, attention_mask_1, input_ids_2, attention_mask_2):
        self._seen("para", input_ids_1)
        return self.paraphrase(torch.cat([self._pool(input_ids_1, attention_mask_1),
                                          self._pool(input_ids_2, attention_mask_2)], -1))

    def predict_similarity(self, input_ids_1, attention_mask_1, input_ids_2, attention_mask_2):
        self._seen("sts", input_ids_1)
        return 5 * torch.sigmoid(self.similarity(torch.cat([self._pool(input_ids_1, attention_mask_1),
                                                            self._pool(input_ids_2, attention_mask_2)], -1)))


def guide_snippet() -> str:
    """The lines the guide tells a student to add to the course's ``test_multitask``."""
    text = GUIDE.read_text()
    block = re.search(r"<!-- course-snippet[^>]*-->\n```python\n(.*?)```", text, re.S).group(1)
    return textwrap.dedent(block)


def test_the_guides_lines_log_a_course_model_that_select_uses(tiny_base, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_base))
    monkeypatch.setitem(sys.modules, "tokenizer", types.SimpleNamespace(
        BertTokenizer=types.SimpleNamespace(from_pretrained=lambda name: tok)))   # the course's tokenizer.py
    shutil.copytree(PACKAGE_SAMPLE, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = MultitaskBERT(len(tok))
    model.train()
    args = types.SimpleNamespace(option="finetune", lr=1e-5, filepath="runs/finetune-10-1e-05-multitask.pt",
                                 batch_size=8)
    scope = {"args": args, "model": model, "device": torch.device("cpu"), "os": os, "print": lambda *a: None}
    exec(guide_snippet(), scope)
    cid = scope["candidate"]
    cand = Registry(tmp_path / "checkpoints").get(cid)
    assert cand.name == "finetune-lr1e-05-finetune-10-1e-05-multitask.pt" and cand.tasks == ["sst", "para", "sts"]
    assert all(cand.has_predictions(t, s) for t in ("sst", "para", "sts") for s in ("dev", "test"))
    assert model.training   # restored
    assert {(training, grad) for *_, training, grad in model.calls} == {(False, False)}
    assert max(shape[0] for _, shape, *_ in model.calls) == 8   # batched as asked
    # what the course's evaluation would have seen: same sentences, tokenized per batch with padding
    model.eval()
    sp = read_split(tmp_path / "data", "para", "dev")
    with torch.no_grad():
        e1 = tok([e.text_a for e in sp.examples[:8]], return_tensors="pt", padding=True, truncation=True)
        e2 = tok([e.text_b for e in sp.examples[:8]], return_tensors="pt", padding=True, truncation=True)
        want = torch.sigmoid(model.predict_paraphrase(e1["input_ids"], e1["attention_mask"], e2["input_ids"],
                                                      e2["attention_mask"])).flatten().double().numpy()
    got = dict(zip(*cand.predictions("para", "dev")))
    assert np.allclose([got[e.id][0] for e in sp.examples[:8]], want, atol=1e-6)
    assert cand.manifest["parameters"] == sum(p.numel() for p in model.parameters())
    r = invoke("select", "--registry", tmp_path / "checkpoints", "--repeats", "0", "--mode", "greedy")
    assert r.exit_code == 0, r.stderr
    doc = Registry(tmp_path / "checkpoints").load_ensemble("ensemble-greedy")
    assert all(doc["tasks"][t]["members"] == [cid] for t in ("sst", "para", "sts"))
    out = tmp_path / "predictions"
    assert invoke("predict", "--registry", tmp_path / "checkpoints", "--out", out).exit_code == 0
    assert len(list(out.glob("*-output.csv"))) == 6


# -- register --refresh asks ------------------------------------------------------------------------
@pytest.fixture()
def two_models(saved_model_dir, tmp_path):
    reg = Registry(tmp_path / "reg")
    register_model(reg, saved_model_dir, PACKAGE_SAMPLE, name="one", device="cpu")
    register_model(reg, saved_model_dir, PACKAGE_SAMPLE, name="two", device="cpu", force=True)
    return reg


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_refresh_of_several_candidates_asks_first(two_models, monkeypatch):
    reg = two_models
    before = _snapshot(reg.root)
    r = invoke("register", "--refresh", "--force", "--registry", reg.root)   # no terminal, no --yes
    assert r.exit_code == 1
    assert "recompute the cached predictions of 2 candidates" in r.stderr
    assert "no terminal to ask on; pass --yes" in " ".join(r.stderr.split())
    monkeypatch.setattr(candidates_cli, "can_ask", lambda: True)
    r = invoke("register", "--refresh", "--force", "--registry", reg.root, input="n\n")
    assert r.exit_code == 1 and "nothing changed" in r.stdout
    assert _snapshot(reg.root) == before
    r = invoke("register", "--refresh", "--force", "--registry", reg.root, "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    assert '"refreshed"' in r.stdout and r.stdout.count('"stale"') == 2


def test_refresh_onto_other_data_asks_even_for_one(two_models, tmp_path):
    other = tmp_path / "newer"
    shutil.copytree(PACKAGE_SAMPLE, other)
    with open(other / "ids-sst-dev.csv", "a") as f:
        f.write("99\tfeedfacefeedfacefeedfacef\ta new sentence .\t2\n")
    before = _snapshot(two_models.root)
    r = invoke("register", "--refresh", "-c", "one", "--data", other, "--registry", two_models.root)
    text = " ".join(r.stderr.split())
    assert r.exit_code == 1 and f"these candidates were made from {PACKAGE_SAMPLE}" in text
    assert f"recompute 1 of them on {other} instead" in text
    assert _snapshot(two_models.root) == before
