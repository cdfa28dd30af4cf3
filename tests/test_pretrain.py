"""Further MLM pretraining: masking, determinism, resume, output as --base, provenance."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ensemble.data import read_split
from ensemble.errors import EnsembleError
from ensemble.files import PICKLE_SUFFIXES
from ensemble.bases import load_base
from ensemble.pretrain import (
    CHECKPOINT_DIR,
    PROVENANCE_FILE,
    _load_mlm,
    _mlm_loss_sum,
    epoch_batches,
    mask_tokens,
    perplexity,
    pretrain,
    step_seed,
)
from ensemble.tasks import TASKS
from tiny import make_tiny_base

SAMPLE = Path(__file__).resolve().parents[1] / "ensemble" / "sample_data"
CLS, SEP, PAD, MASK = 2, 3, 0, 4   # ids in tests/tiny.py's vocabulary


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny models: one thread is fastest and avoids spin-waiting on a busy machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_base(tmp_path_factory.mktemp("base") / "tiny")


class Recorder:
    def __init__(self, stop_after: int | None = None):
        self.notes: list[str] = []
        self.started: list[tuple] = []
        self.advanced: list[tuple[int, dict]] = []
        self.stopped = 0
        self.stop_after = stop_after

    def start(self, description, total=None):
        self.started.append((description, total))

    def advance(self, n=1, **fields):
        self.advanced.append((n, fields))
        if self.stop_after is not None and sum(1 for _, f in self.advanced if "loss" in f) >= self.stop_after:
            raise KeyboardInterrupt("simulated interruption")

    def stop(self):
        self.stopped += 1

    def note(self, text):
        self.notes.append(text)


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


def test_pretrain_draws_new_masks_every_step(tiny, tmp_path, monkeypatch):
    import ensemble.pretrain as pt

    data = tmp_path / "one"
    data.mkdir()
    for name in ("ids-sst-train.csv", "ids-sst-dev.csv"):
        (data / name).write_text("\tid\tsentence\tsentiment\n0\ta1\tthe film was not very good , the plot was boring and the acting awful .\t1\n")
    seen = []

    def spy(*a, **kw):
        res = mask_tokens(*a, **kw)
        seen.append((a[0].clone(), res[1].clone()))
        return res

    monkeypatch.setattr(pt, "mask_tokens", spy)
    pretrain(data, str(tiny), ("sst",), 4, tmp_path / "o", batch_size=4, perplexity_limit=0)
    assert len(seen) == 4 and all(torch.equal(x, seen[0][0]) for x, _ in seen)   # the same sentence
    assert len({tuple((lab != -100).flatten().tolist()) for _, lab in seen}) == 4  # four different masks


def test_pairs_are_encoded_as_pairs_with_token_types(tiny, tmp_path, monkeypatch):
    import ensemble.pretrain as pt

    seen = []

    def spy(mlm, input_ids, attention_mask, token_type_ids, labels):
        seen.append((input_ids.clone(), attention_mask.clone(), token_type_ids.clone(), labels.clone()))
        return _mlm_loss_sum(mlm, input_ids, attention_mask, token_type_ids, labels)

    monkeypatch.setattr(pt, "_mlm_loss_sum", spy)
    pretrain(SAMPLE, str(tiny), ("para",), 1, tmp_path / "o", batch_size=64, perplexity_limit=0)
    (xin, m, tt, labels), = seen
    assert xin.shape[0] == 48
    x = torch.where(labels != -100, labels, xin)   # the uncorrupted ids
    for row, mask, types in zip(x, m, tt):
        n = int(mask.sum())
        r, t = row[:n].tolist(), types[:n].tolist()
        seps = [i for i, v in enumerate(r) if v == SEP]
        assert r[0] == CLS and len(seps) == 2 and seps[1] == n - 1        # [CLS] a [SEP] b [SEP]
        assert t == [0] * (seps[0] + 1) + [1] * (n - seps[0] - 1)


def test_epoch_order_is_a_permutation_and_a_function_of_seed_and_epoch():
    lengths = np.random.default_rng(0).integers(3, 60, size=103)
    b = epoch_batches(lengths, 8, seed=3, epoch=2)
    assert len(b) == 13 and sorted(np.concatenate(b).tolist()) == list(range(103))
    same = epoch_batches(lengths, 8, seed=3, epoch=2)
    assert all(np.array_equal(x, y) for x, y in zip(b, same))
    other = epoch_batches(lengths, 8, seed=3, epoch=3)
    assert not all(np.array_equal(x, y) for x, y in zip(b, other))


# -- model ------------------------------------------------------------------------------------
def test_fast_loss_equals_transformers_mlm_loss(tiny):
    mlm, tok, missing, pooler = _load_mlm(str(tiny), str(tiny))
    assert any(k.startswith("cls.") for k in missing)          # tiny base: no MLM head
    assert set(pooler) == {"bert.pooler.dense.weight", "bert.pooler.dense.bias"}
    mlm.eval()
    enc = tok(["the film was good", "a bad movie"], ["it is fine", "not great"], padding=True, return_tensors="pt")
    xin, labels = mask_tokens(enc["input_ids"], enc["attention_mask"], special_ids=tok.all_special_ids,
                              mask_token_id=tok.mask_token_id, replacement_ids=torch.arange(5, 100),
                              generator=torch.Generator().manual_seed(0), mask_prob=0.5)
    with torch.no_grad():
        s, n = _mlm_loss_sum(mlm, xin, enc["attention_mask"], enc["token_type_ids"], labels)
        ref = mlm(input_ids=xin, attention_mask=enc["attention_mask"], token_type_ids=enc["token_type_ids"],
                  labels=labels).loss
    assert n == (labels != -100).sum().item() > 0
    assert abs(s.item() / n - ref.item()) < 1e-5


def _weights(d: Path) -> dict[str, torch.Tensor]:
    return load_file(str(d / "model.safetensors"))


def test_pretraining_lowers_the_loss_and_output_loads_as_base(tiny, tmp_path):
    rec = Recorder()
    out = tmp_path / "pt"
    r = pretrain(SAMPLE, str(tiny), ("sst",), 40, out, lr=3e-3, batch_size=16, seed=0, checkpoint_every=0,
                 progress=rec)
    # the chosen head is reported, and the progress protocol was followed
    assert r.head == "fresh" and any("freshly initialised" in n for n in rec.notes)
    assert rec.started == [("pretrain", 40)] and rec.stopped == 1
    assert [n for n, _ in rec.advanced] == [1] * 40 and all("loss" in f for _, f in rec.advanced)
    # lower loss: held-out perplexity with fixed masks, and the training loss
    assert r.perplexity_after < 0.8 * r.perplexity_before, (r.perplexity_before, r.perplexity_after)
    assert np.mean(r.losses[-5:]) < np.mean(r.losses[:5]) - 0.3
    # perplexity() of the saved directory (with its trained head) reproduces the measurement
    sst_dev = [e.text_a for e in read_split(SAMPLE, "sst", "dev").examples]
    assert abs(perplexity(out, texts=sst_dev) - r.perplexity_after) < 1e-3 * r.perplexity_after
    # safetensors only, never pickle
    assert not [p for p in out.rglob("*") if p.suffix in PICKLE_SUFFIXES]
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert (out / "tokenizer.json").is_file()
    # loads as --base: the encoder holds the trained weights, the pooler is the base's
    enc, tok = load_base(str(out), 0.1)
    saved = _weights(out)
    orig = _weights(tiny)
    sd = enc.state_dict()
    for k, v in sd.items():
        if k.endswith("position_ids"):
            continue
        if k.startswith("pooler."):
            assert torch.equal(v, orig[k]), k
        else:
            assert torch.equal(v, saved["bert." + k]), k
    changed = [k for k in sd if not k.startswith("pooler.") and k in orig and not torch.equal(sd[k], orig[k])]
    assert len(changed) > 20
    assert tok.mask_token_id == 4


def test_pretrained_head_is_detected_and_used(tiny, tmp_path):
    first = tmp_path / "a"
    pretrain(SAMPLE, str(tiny), ("sts",), 2, first, batch_size=8, perplexity_limit=0)
    rec = Recorder()
    r = pretrain(SAMPLE, str(first), ("sts",), 1, tmp_path / "b", batch_size=8, perplexity_limit=0, progress=rec)
    assert r.head == "pretrained" and r.head_missing_keys == []
    assert any("own pretrained head" in n for n in rec.notes)
    prov = json.loads((tmp_path / "b" / PROVENANCE_FILE).read_text())
    assert prov["head"] == "pretrained" and prov["base_provenance"]["steps"] == 2


def _run(base, out, steps, **kw):
    kw.setdefault("perplexity_limit", 0)
    return pretrain(SAMPLE, str(base), ("sst", "para"), steps, out, lr=1e-3, batch_size=16, seed=7, **kw)


def test_resume_reproduces_an_uninterrupted_run(tiny, tmp_path):
    straight = _run(tiny, tmp_path / "straight", 6, checkpoint_every=0)
    # 3 steps, then extended to 6
    _run(tiny, tmp_path / "split", 3)
    resumed = _run(tiny, tmp_path / "split", 6, resume=True)
    assert resumed.resumed_from == 3 and resumed.steps_run == 3
    # interrupted after 5 steps with checkpoints every 2: resumes from step 4
    with pytest.raises(KeyboardInterrupt):
        _run(tiny, tmp_path / "crash", 6, checkpoint_every=2, progress=Recorder(stop_after=5))
    assert json.loads((tmp_path / "crash" / CHECKPOINT_DIR / "state.json").read_text())["step"] == 4
    crashed = _run(tiny, tmp_path / "crash", 6, resume=True)
    assert crashed.resumed_from == 4
    a = _weights(tmp_path / "straight")
    for other in ("split", "crash"):
        b = _weights(tmp_path / other)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (other, k)
    assert resumed.losses == straight.losses == crashed.losses
    # the epoch covered more than one batch: the test exercises the data order (48+48 rows / 16)
    assert straight.sequences == 96


def test_resume_refuses_changed_settings_and_missing_checkpoint(tiny, tmp_path):
    _run(tiny, tmp_path / "r", 2)
    with pytest.raises(EnsembleError, match="seed: checkpoint 7, now 8"):
        pretrain(SAMPLE, str(tiny), ("sst", "para"), 4, tmp_path / "r", lr=1e-3, batch_size=16, seed=8,
                 resume=True, perplexity_limit=0)
    with pytest.raises(EnsembleError, match="not empty; pass --resume"):
        _run(tiny, tmp_path / "r", 4)
    with pytest.raises(EnsembleError, match="no checkpoint"):
        _run(tiny, tmp_path / "none", 4, resume=True)
    with pytest.raises(EnsembleError, match="beyond --steps 1"):
        _run(tiny, tmp_path / "r", 1, resume=True)
    with pytest.raises(EnsembleError, match="--tasks"):
        pretrain(SAMPLE, str(tiny), ("sst", "qqp"), 1, tmp_path / "t")


def test_provenance_records_what_was_done(tiny, tmp_path):
    out = tmp_path / "p"
    r = pretrain(SAMPLE, str(tiny), ("sst", "sts"), 3, out, lr=2e-4, layer_decay=0.9, batch_size=8, seed=5,
                 include_eval_inputs=True, mask_prob=0.2, perplexity_limit=10)
    prov = json.loads((out / PROVENANCE_FILE).read_text())
    assert prov == r.provenance
    names = [TASKS[t].file_name(s) for t in ("sst", "sts") for s in ("train", "dev", "test")]
    import hashlib
    assert prov["data"] == {n: hashlib.sha256((SAMPLE / n).read_bytes()).hexdigest() for n in names}
    assert prov["base"] == str(tiny) and prov["tasks"] == ["sst", "sts"] and prov["steps"] == 3
    assert (prov["seed"], prov["lr"], prov["layer_decay"], prov["batch_size"]) == (5, 2e-4, 0.9, 8)
    assert prov["masking"]["mask_prob"] == 0.2
    assert (prov["masking"]["mask_token"], prov["masking"]["random_token"], prov["masking"]["unchanged"]) == (0.8, 0.1, 0.1)
    assert prov["masking"]["next_sentence_prediction"] is False
    assert prov["head"] == "fresh" and prov["head_missing_keys"]
    assert prov["include_eval_inputs"] is True
    ppl = prov["perplexity"]
    assert ppl["held_out"] is False and ppl["before"] > 0 and ppl["after"] > 0
    assert ppl["texts"] == "sst dev (10 of 24), sts dev (10 of 24)"
    assert prov["sequences"]["total"] == sum(prov["sequences"]["per_file"].values()) == r.sequences
    assert r.sequences == 48 + 24 + 16 + 48 + 24 + 16


def test_layer_decay_sets_the_learning_rates(tiny):
    from ensemble.pretrain import _param_groups

    mlm, *_ = _load_mlm(str(tiny), str(tiny))
    lr_of = {}
    for g in _param_groups(mlm, 1.0, 0.5, 0.01):
        for n in g["names"]:
            lr_of[n] = (g["lr"], g["weight_decay"])
    assert lr_of["bert.encoder.layer.1.attention.self.query.weight"] == (1.0, 0.01)
    assert lr_of["bert.encoder.layer.0.attention.self.query.weight"] == (0.5, 0.01)
    assert lr_of["bert.embeddings.word_embeddings.weight"] == (0.25, 0.01)
    assert lr_of["bert.embeddings.LayerNorm.weight"] == (0.25, 0.0)
    assert lr_of["cls.predictions.transform.dense.weight"] == (1.0, 0.01)
    assert "cls.predictions.decoder.weight" not in lr_of     # tied to the word embeddings
