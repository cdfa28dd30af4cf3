"""Further MLM pretraining: the config, determinism, resume, output as --base, provenance."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ensemble.data import PACKAGE_SAMPLE, read_split
from ensemble.errors import EnsembleError
from ensemble.files import PICKLE_SUFFIXES
from ensemble.training.mlm import mask_tokens, mlm_loss_sum, perplexity
from ensemble.training.mlm_checkpoint import CHECKPOINT_DIR, PROVENANCE_FILE
from ensemble.modeling.bases import load_base
from ensemble.training.pretrain import PretrainConfig, epoch_batches, pretrain
from ensemble.progress import NULL
from ensemble.tasks import TASKS
from fixtures_torch import torch_one_thread  # noqa: F401

SAMPLE = PACKAGE_SAMPLE
CLS, SEP = 2, 3   # ids in tests/tiny.py's vocabulary


def run_pretrain(data, base, tasks, steps, out, *, resume=False, progress=NULL, **settings):
    """``pretrain`` with a :class:`PretrainConfig` of these settings."""
    cfg = PretrainConfig(base=str(base), tasks=tasks, steps=steps, **settings)
    return pretrain(cfg, data, out, resume=resume, progress=progress)


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


def test_pretrain_draws_new_masks_every_step(tiny_base_dir, tmp_path, monkeypatch):
    data = tmp_path / "one"
    data.mkdir()
    for name in ("ids-sst-train.csv", "ids-sst-dev.csv"):
        (data / name).write_text("\tid\tsentence\tsentiment\n0\ta1\tthe film was not very good , the plot was boring and the acting awful .\t1\n")
    seen = []

    def spy(*a, **kw):
        res = mask_tokens(*a, **kw)
        seen.append((a[0].clone(), res[1].clone()))
        return res

    monkeypatch.setattr("ensemble.training.mlm.mask_tokens", spy)
    run_pretrain(data, str(tiny_base_dir), ("sst",), 4, tmp_path / "o", batch_size=4, perplexity_limit=0)
    assert len(seen) == 4 and all(torch.equal(x, seen[0][0]) for x, _ in seen)   # the same sentence
    assert len({tuple((lab != -100).flatten().tolist()) for _, lab in seen}) == 4  # four different masks


def test_pairs_are_encoded_as_pairs_with_token_types(tiny_base_dir, tmp_path, monkeypatch):
    seen = []

    def spy(mlm, input_ids, attention_mask, token_type_ids, labels):
        seen.append((input_ids.clone(), attention_mask.clone(), token_type_ids.clone(), labels.clone()))
        return mlm_loss_sum(mlm, input_ids, attention_mask, token_type_ids, labels)

    monkeypatch.setattr("ensemble.training.pretrain.mlm_loss_sum", spy)
    run_pretrain(SAMPLE, str(tiny_base_dir), ("para",), 1, tmp_path / "o", batch_size=64, perplexity_limit=0)
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


def _weights(d: Path) -> dict[str, torch.Tensor]:
    return load_file(str(d / "model.safetensors"))


def test_pretraining_lowers_the_loss_and_output_loads_as_base(tiny_base_dir, tmp_path):
    rec = Recorder()
    out = tmp_path / "pt"
    r = run_pretrain(SAMPLE, str(tiny_base_dir), ("sst",), 40, out, lr=3e-3, batch_size=16, seed=0, checkpoint_every=0,
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
    orig = _weights(tiny_base_dir)
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


def test_pretrained_head_is_detected_and_used(tiny_base_dir, tmp_path):
    first = tmp_path / "a"
    run_pretrain(SAMPLE, str(tiny_base_dir), ("sts",), 2, first, batch_size=8, perplexity_limit=0)
    rec = Recorder()
    r = run_pretrain(SAMPLE, str(first), ("sts",), 1, tmp_path / "b", batch_size=8, perplexity_limit=0, progress=rec)
    assert r.head == "pretrained" and r.head_missing_keys == []
    assert any("own pretrained head" in n for n in rec.notes)
    prov = json.loads((tmp_path / "b" / PROVENANCE_FILE).read_text())
    assert prov["head"] == "pretrained" and prov["base_provenance"]["steps"] == 2


def _run(base, out, steps, **kw):
    kw.setdefault("perplexity_limit", 0)
    return run_pretrain(SAMPLE, str(base), ("sst", "para"), steps, out, lr=1e-3, batch_size=16, seed=7, **kw)


def test_resume_reproduces_an_uninterrupted_run(tiny_base_dir, tmp_path):
    straight = _run(tiny_base_dir, tmp_path / "straight", 6, checkpoint_every=0)
    # 3 steps, then extended to 6
    _run(tiny_base_dir, tmp_path / "split", 3)
    resumed = _run(tiny_base_dir, tmp_path / "split", 6, resume=True)
    assert resumed.resumed_from == 3 and resumed.steps_run == 3
    # interrupted after 5 steps with checkpoints every 2: resumes from step 4
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_base_dir, tmp_path / "crash", 6, checkpoint_every=2, progress=Recorder(stop_after=5))
    assert json.loads((tmp_path / "crash" / CHECKPOINT_DIR / "state.json").read_text())["step"] == 4
    crashed = _run(tiny_base_dir, tmp_path / "crash", 6, resume=True)
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


def test_resume_refuses_changed_settings_and_missing_checkpoint(tiny_base_dir, tmp_path):
    _run(tiny_base_dir, tmp_path / "r", 2)
    with pytest.raises(EnsembleError, match="seed: checkpoint 7, now 8"):
        run_pretrain(SAMPLE, str(tiny_base_dir), ("sst", "para"), 4, tmp_path / "r", lr=1e-3, batch_size=16, seed=8,
                 resume=True, perplexity_limit=0)
    with pytest.raises(EnsembleError, match="not empty; pass --resume"):
        _run(tiny_base_dir, tmp_path / "r", 4)
    with pytest.raises(EnsembleError, match="no checkpoint"):
        _run(tiny_base_dir, tmp_path / "none", 4, resume=True)
    with pytest.raises(EnsembleError, match="beyond --steps 1"):
        _run(tiny_base_dir, tmp_path / "r", 1, resume=True)
    with pytest.raises(EnsembleError, match="--tasks"):
        run_pretrain(SAMPLE, str(tiny_base_dir), ("sst", "qqp"), 1, tmp_path / "t")


def test_provenance_records_what_was_done(tiny_base_dir, tmp_path):
    out = tmp_path / "p"
    r = run_pretrain(SAMPLE, str(tiny_base_dir), ("sst", "sts"), 3, out, lr=2e-4, layer_decay=0.9, batch_size=8, seed=5,
                 include_eval_inputs=True, mask_prob=0.2, perplexity_limit=10)
    prov = json.loads((out / PROVENANCE_FILE).read_text())
    assert prov == r.provenance
    names = [TASKS[t].file_name(s) for t in ("sst", "sts") for s in ("train", "dev", "test")]
    assert prov["data"] == {n: hashlib.sha256((SAMPLE / n).read_bytes()).hexdigest() for n in names}
    assert prov["base"] == str(tiny_base_dir) and prov["tasks"] == ["sst", "sts"] and prov["steps"] == 3
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




@pytest.mark.parametrize("field,value,message", [
    ("steps", 0, "--steps 0: expected at least 1"),
    ("batch_size", 0, "--batch-size 0: expected at least 1"),
    ("mask_prob", 1.0, "--mask-prob 1.0: expected a probability"),
    ("lr", 0.0, "--lr 0.0: expected a positive learning rate"),
    ("layer_decay", 1.5, r"--layer-decay 1.5: expected a factor in \(0, 1\]"),
    ("checkpoint_every", -1, "--checkpoint-every and warm-up steps must not be negative"),
    ("warmup_steps", -1, "--checkpoint-every and warm-up steps must not be negative"),
])
def test_config_checks_its_fields(field, value, message):
    with pytest.raises(EnsembleError, match=message):
        PretrainConfig(**{"base": "b", "tasks": ("sst",), "steps": 1, field: value})
    with pytest.raises(EnsembleError, match="--tasks"):
        PretrainConfig(base="b", tasks=(), steps=1)
    assert PretrainConfig(base="b", tasks="sts,sst", steps=1).tasks == ("sst", "sts")   # canonical order


def test_config_is_saved_with_the_checkpoint_and_the_provenance(tiny_base_dir, tmp_path):
    out = tmp_path / "c"
    r = run_pretrain(SAMPLE, tiny_base_dir, ("sst",), 2, out, batch_size=8, seed=3, perplexity_limit=0)
    want = PretrainConfig(base=str(tiny_base_dir), tasks=("sst",), steps=2, batch_size=8, seed=3,
                          perplexity_limit=0).to_dict()
    assert json.loads((out / CHECKPOINT_DIR / "state.json").read_text())["config"] == want
    assert r.provenance["config"] == want
