"""The masked-language model: BERT masking, the loss, the optimiser groups of its parameters."""
from __future__ import annotations

import pytest
import torch

from ensemble.errors import EnsembleError
from ensemble.training.mlm import MlmRoles, load_mlm, mask_tokens, mlm_loss_sum
from ensemble.training.pretrain import PretrainConfig, step_seed
from ensemble.training.finetune import param_groups
from fixtures_torch import torch_one_thread  # noqa: F401

CLS, SEP, PAD, MASK = 2, 3, 0, 4   # ids in tests/tiny.py's vocabulary


def _batch(n=64, width=512, seed=0, vocab=150):
    """A padded batch: [CLS] tokens [SEP] tokens [SEP] [PAD]..., rows of random lengths."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (n, width), generator=g)
    mask = torch.zeros(n, width, dtype=torch.long)
    lengths = torch.randint(width // 4, width + 1, (n,), generator=g)
    for i, L in enumerate(lengths.tolist()):
        ids[i, 0] = CLS
        ids[i, L // 2] = SEP
        ids[i, L - 1] = SEP
        ids[i, L:] = PAD
        mask[i, :L] = 1
    return ids, mask


def _mask(ids, mask, seed=0, mask_prob=0.15):
    repl = torch.arange(5, 150)
    return mask_tokens(ids, mask, special_ids=[PAD, 1, CLS, SEP, MASK], mask_token_id=MASK, replacement_ids=repl,
                       generator=torch.Generator().manual_seed(seed), mask_prob=mask_prob)


# -- masking ----------------------------------------------------------------------------------
def test_masking_proportions_and_never_special_or_padding():
    ids, mask = _batch()
    xin, labels = _mask(ids, mask)
    special = (ids == CLS) | (ids == SEP) | (mask == 0)
    eligible = ~special
    chosen = labels != -100
    assert torch.equal(labels[chosen], ids[chosen])
    frac = chosen.sum().item() / eligible.sum().item()
    assert abs(frac - 0.15) < 0.01, frac
    # never chosen, never changed: [CLS], [SEP], padding
    assert not chosen[special].any()
    assert torch.equal(xin[special], ids[special])
    assert not chosen[mask == 0].any() and (xin[mask == 0] == PAD).all()
    # padding is never chosen even when its id is an ordinary token (attention mask decides)
    odd = ids.clone()
    odd[mask == 0] = 9
    _, lab = _mask(odd, mask)
    assert not (lab[mask == 0] != -100).any()
    # unchosen tokens are never changed
    assert torch.equal(xin[~chosen], ids[~chosen])
    n = chosen.sum().item()
    to_mask = (xin == MASK) & chosen
    kept = (xin == ids) & chosen
    rand = chosen & ~to_mask & ~kept
    assert abs(to_mask.sum().item() / n - 0.8) < 0.02
    assert abs(rand.sum().item() / n - 0.1) < 0.015
    assert abs(kept.sum().item() / n - 0.1) < 0.015
    # random replacements are ordinary tokens, never special
    assert (xin[rand] >= 5).all()


def test_mask_prob_is_honoured_and_an_empty_batch_still_gets_one_target():
    ids, mask = _batch(n=32, width=256, seed=1)
    _, labels = _mask(ids, mask, mask_prob=0.4)
    frac = (labels != -100).sum().item() / ((mask == 1) & (ids != CLS) & (ids != SEP)).sum().item()
    assert abs(frac - 0.4) < 0.02
    short = torch.tensor([[CLS, 7, SEP, PAD]])
    _, lab = _mask(short, torch.tensor([[1, 1, 1, 0]]), mask_prob=1e-9)
    assert lab.tolist() == [[-100, 7, -100, -100]]


def test_masks_are_a_pure_function_of_seed_and_step():
    ids, mask = _batch(n=8, width=64)

    def at(seed, step):
        return _mask(ids, mask, seed=step_seed(seed, step, 1))

    a, b = at(0, 5), at(0, 5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(at(0, 5)[1], at(0, 6)[1])   # new masks every step
    assert not torch.equal(at(0, 5)[1], at(1, 5)[1])


# -- model ------------------------------------------------------------------------------------
def test_fast_loss_equals_transformers_mlm_loss(tiny_base_dir):
    mlm, tok, missing, pooler = load_mlm(str(tiny_base_dir), str(tiny_base_dir))
    assert any(k.startswith("cls.") for k in missing)          # tiny base: no MLM head
    assert set(pooler) == {"bert.pooler.dense.weight", "bert.pooler.dense.bias"}
    mlm.eval()
    enc = tok(["the film was good", "a bad movie"], ["it is fine", "not great"], padding=True, return_tensors="pt")
    xin, labels = mask_tokens(enc["input_ids"], enc["attention_mask"], special_ids=tok.all_special_ids,
                              mask_token_id=tok.mask_token_id, replacement_ids=torch.arange(5, 100),
                              generator=torch.Generator().manual_seed(0), mask_prob=0.5)
    with torch.no_grad():
        s, n = mlm_loss_sum(mlm, xin, enc["attention_mask"], enc["token_type_ids"], labels)
        ref = mlm(input_ids=xin, attention_mask=enc["attention_mask"], token_type_ids=enc["token_type_ids"],
                  labels=labels).loss
    assert n == (labels != -100).sum().item() > 0
    assert abs(s.item() / n - ref.item()) < 1e-5


def test_layer_decay_sets_the_learning_rates(tiny_base_dir):
    mlm, *_ = load_mlm(str(tiny_base_dir), str(tiny_base_dir))
    lr_of = {}
    cfg = PretrainConfig(base=str(tiny_base_dir), tasks=("sst",), steps=1, lr=1.0, layer_decay=0.5, weight_decay=0.01)
    for g in param_groups(MlmRoles(mlm), cfg):
        for n in g["names"]:
            lr_of[n] = (g["lr"], g["weight_decay"])
    assert lr_of["bert.encoder.layer.1.attention.self.query.weight"] == (1.0, 0.01)
    assert lr_of["bert.encoder.layer.0.attention.self.query.weight"] == (0.5, 0.01)
    assert lr_of["bert.embeddings.word_embeddings.weight"] == (0.25, 0.01)
    assert lr_of["bert.embeddings.LayerNorm.weight"] == (0.25, 0.0)
    assert lr_of["cls.predictions.transform.dense.weight"] == (1.0, 0.01)
    assert "cls.predictions.decoder.weight" not in lr_of     # tied to the word embeddings


def test_load_mlm_refuses_what_is_not_a_model_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(EnsembleError, match="expected a model directory"):
        load_mlm("file", str(tmp_path / "file"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EnsembleError, match="no config.json"):
        load_mlm("empty", str(tmp_path / "empty"))
