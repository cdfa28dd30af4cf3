"""ensemble.bases: a random BERT of any size, written offline, loads as a base; pickles are refused."""
from __future__ import annotations

import inspect
import shutil

import pytest

from ensemble.bases import load_base, make_random_base
from ensemble.errors import EnsembleError
from fixtures_torch import tiny_base  # noqa: F401 (fixture)


def test_random_base_has_the_asked_shape_and_loads(tmp_path):
    out = make_random_base(tmp_path / "rb", layers=2, hidden=64, heads=4, intermediate=96)
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rb.")]      # no temporary folder left
    model, tok = load_base(str(out), 0.1)
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (2, 64, 4, 96)
    assert len(tok) == cfg.vocab_size == 30522                          # MiniLM's = bert-base-uncased's WordPiece
    assert tok("the film")["input_ids"] == [101, 1996, 2143, 102]
    # the default shape is BERT-base's: 12 layers, hidden 768, 12 heads, 4 x 768 = 3,072 wide (not written here)
    defaults = {k: v.default for k, v in inspect.signature(make_random_base).parameters.items()}
    assert (defaults["layers"], defaults["hidden"], defaults["heads"], defaults["intermediate"]) == (12, 768, 12, None)
    with pytest.raises(EnsembleError, match="exists and is not an empty folder"):
        make_random_base(out, layers=1, hidden=8, heads=2)
    with pytest.raises(EnsembleError, match="hidden divisible by heads"):
        make_random_base(tmp_path / "bad", layers=1, hidden=10, heads=4)
    with pytest.raises(EnsembleError, match="--intermediate 0: expected positive sizes"):
        make_random_base(tmp_path / "bad", layers=1, hidden=8, heads=2, intermediate=0)
    assert not (tmp_path / "bad").exists()


def test_load_base_refuses_pickle(tiny_base, tmp_path):
    shutil.copytree(tiny_base, tmp_path / "b")
    (tmp_path / "b" / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(EnsembleError, match="safetensors"):
        load_base(str(tmp_path / "b"), 0.1)
