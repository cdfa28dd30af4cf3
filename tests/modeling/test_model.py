"""Architectures (parameter counts by hand, what is shared), save/load, pickle refusal."""
from __future__ import annotations

import json

import pytest
import torch

from ensemble.modeling.bases import load_base
from ensemble.errors import EnsembleError
from ensemble.files import refuse_pickles
from ensemble.modeling.model import (
    CONFIG_FILE, WEIGHTS_FILE, ModelConfig, load_model, save_model,
)
from fixtures_torch import ALL_TASKS, build_model, tiny_base, torch_one_thread  # noqa: F401

N_OUT = {"sst": 5, "para": 1, "sts": 1}


# -- parameter counts, worked out by hand from the encoder's config ----------------------------
def sizes(base_dir):
    """(embeddings, one encoder layer, pooler, N) of the tiny BERT, from its config alone."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(str(base_dir))
    H, V, P, T, I = c.hidden_size, c.vocab_size, c.max_position_embeddings, c.type_vocab_size, c.intermediate_size
    emb = (V + P + T) * H + 2 * H                       # word, position, token-type tables + LayerNorm
    attention = 4 * (H * H + H) + 2 * H                 # query, key, value, output dense + LayerNorm
    ffn = (H * I + I) + (I * H + H) + 2 * H             # intermediate, output dense + LayerNorm
    pooler = H * H + H
    return emb, attention + ffn, pooler, c.num_hidden_layers, H


def heads(width, tasks):
    """Linear heads: sst 5 outputs, para 1, sts 1, all reading ``width`` inputs."""
    return sum(width * N_OUT[t] + N_OUT[t] for t in tasks)


def test_tiny_sizes_by_hand(tiny_base):
    # the tiny config (vocab 154 at the time of writing, hidden 32, 2 layers, intermediate 64,
    # 64 positions, 2 token types): one layer is 4*(32*32+32) + 64 + (32*64+64) + (64*32+32) + 64
    emb, layer, pooler, n, h = sizes(tiny_base)
    assert (n, h) == (2, 32)
    assert layer == 8544 and pooler == 1056
    base, _ = load_base(str(tiny_base), 0.1)
    assert sum(p.numel() for p in base.parameters()) == emb + n * layer + pooler


@pytest.mark.parametrize("tasks", [ALL_TASKS, ("sst", "sts")])
def test_parameter_counts_by_formula(tiny_base, tasks):
    emb, layer, pooler, n, h = sizes(tiny_base)
    m = len(tasks)
    encoder = emb + n * layer + pooler

    def count(arch, k=0):
        return build_model(tiny_base, arch, k, tasks)[0].num_parameters()

    multi = emb + n * layer + pooler + heads(h, tasks)
    assert count("multi") == multi
    assert count("cerberus", 0) == multi                                     # K=0 is multi
    assert count("cerberus", 1) == emb + (n - 1) * layer + m * (1 * layer + pooler) + heads(h, tasks)
    assert count("cerberus", n) == emb + m * (n * layer + pooler) + heads(h, tasks)
    assert count("triple") == m * encoder + heads(h, tasks)
    # static: the frozen encoder counts, the heads read two [CLS] vectors
    assert count("static") == 2 * encoder + heads(2 * h, tasks)
    # multi+triple: one shared encoder plus one per task, heads read two [CLS] vectors
    assert count("multi+triple") == (m + 1) * encoder + heads(2 * h, tasks)


def test_static_counts_frozen_encoder_but_does_not_train_it(tiny_base):
    emb, layer, pooler, n, h = sizes(tiny_base)
    model = build_model(tiny_base, "static")[0]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == emb + n * layer + pooler + heads(2 * h, ALL_TASKS)
    roles = {name for name, *_ in model.parameter_roles()}
    assert not any(".frozen" in name for name in roles)
    model.train()
    assert not model.stacks["frozen"].training and model.stacks["shared"].training


def test_cerberus_task_layers_out_of_range(tiny_base):
    with pytest.raises(EnsembleError, match="--task-layers 3: expected 0..2"):
        build_model(tiny_base, "cerberus", 3)
    with pytest.raises(EnsembleError, match="cerberus architecture only"):
        ModelConfig("multi", ALL_TASKS, 1)
    with pytest.raises(EnsembleError, match="not known"):
        ModelConfig("hydra", ALL_TASKS)


# -- what is shared ------------------------------------------------------------------------------
def path_layers(model, task):
    """The encoder layer modules a task's (first) stream runs through, bottom to top."""
    _, stack_keys, _ = model.streams[task][0]
    return [layer for key in stack_keys for layer in model.stacks[key]]


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def shares_storage(a, b):
    pa = {p.data_ptr() for p in a.parameters()}
    return any(p.data_ptr() in pa for p in b.parameters())


@pytest.mark.parametrize("k", [0, 1, 2])
def test_cerberus_shares_exactly_the_bottom_layers(tiny_base, k):
    model, _, base = build_model(tiny_base, "cerberus", k)
    n = model.n_layers
    base_layers = list(base.encoder.layer)
    paths = {t: path_layers(model, t) for t in ALL_TASKS}
    for t in ALL_TASKS:
        assert len(paths[t]) == n
        assert model.embeddings[model.streams[t][0][0]] is model.embeddings["shared"]
    for t1 in ALL_TASKS:
        for t2 in ALL_TASKS:
            if t1 == t2:
                continue
            for i in range(n):
                if i < n - k:   # shared trunk: the very same module object (the base's own layer)
                    assert paths[t1][i] is paths[t2][i] is base_layers[i]
                else:           # per-task copy: a distinct module with its own storage, equal weights
                    assert paths[t1][i] is not paths[t2][i]
                    assert not shares_storage(paths[t1][i], paths[t2][i])
                    assert same_weights(paths[t1][i], paths[t2][i])
                    assert same_weights(paths[t1][i], base_layers[i])
            pooler1, pooler2 = model.poolers[model.streams[t1][0][2]], model.poolers[model.streams[t2][0][2]]
            assert (pooler1 is pooler2) == (k == 0)


def test_cerberus_gradients_stay_in_the_task_branch(tiny_base):
    model, tok, _ = build_model(tiny_base, "cerberus", 1, hidden_dropout=0.0)
    enc = tok(["the film is good ."], return_tensors="pt")
    y = model("sst", enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    y.sum().backward()

    def grads(module):
        return [p.grad for p in module.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads(model.stacks["sst"]))
    assert all(g is not None for g in grads(model.stacks["shared"]))
    assert any(g.abs().sum() > 0 for g in grads(model.embeddings["shared"]))
    for other in ("para", "sts"):
        assert all(g is None for g in grads(model.stacks[other]) + grads(model.poolers[other]) + grads(model.heads[other]))


@pytest.mark.parametrize("arch,keys", [("triple", ALL_TASKS), ("multi+triple", ("shared",) + ALL_TASKS)])
def test_independent_encoders_are_distinct_with_equal_initial_weights(tiny_base, arch, keys):
    model = build_model(tiny_base, arch)[0]
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            for part in (model.embeddings, model.stacks, model.poolers):
                assert part[a] is not part[b] and not shares_storage(part[a], part[b])
                assert same_weights(part[a], part[b])
    if arch == "multi+triple":
        for t in ALL_TASKS:
            assert [s[0] for s in model.streams[t]] == ["shared", t]
            assert model.heads[t][-1].in_features == 2 * model.encoder_config.hidden_size


@pytest.mark.parametrize("arch,k", [("multi", 0), ("cerberus", 1), ("triple", 0), ("static", 0), ("multi+triple", 0)])
def test_forward_shapes(tiny_base, arch, k):
    model, tok, _ = build_model(tiny_base, arch, k)
    model.eval()
    single = tok(["the film is good .", "bad"], padding=True, return_tensors="pt")
    pair = tok(["how old are you ?", "a dog"], ["who are you ?", "a cat ."], padding=True, return_tensors="pt")
    for t, enc in (("sst", single), ("para", pair), ("sts", pair)):
        y = model(t, enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        assert y.shape == (2, N_OUT[t]) and torch.isfinite(y).all()


# -- saving and loading ------------------------------------------------------------------------
@pytest.mark.parametrize("arch,k", [("multi", 0), ("cerberus", 1), ("cerberus", 2), ("static", 0), ("multi+triple", 0)])
def test_save_load_round_trip(tiny_base, tmp_path, arch, k):
    model, tok, _ = build_model(tiny_base, arch, k, seed=5)
    model.eval()
    files = save_model(model, tok, tmp_path / "m")
    names = {p.name for p in files}
    assert {WEIGHTS_FILE, CONFIG_FILE, "tokenizer.json"} <= names
    assert not any(p.suffix in (".bin", ".pt", ".pth", ".pkl") for p in files)
    loaded, tok2 = load_model(tmp_path / "m")
    assert not loaded.training
    # the stored config is JSON (id2label keys become strings), compare it as JSON
    assert loaded.config.to_dict() == json.loads(json.dumps(model.config.to_dict()))
    assert loaded.num_parameters() == model.num_parameters()
    sa, sb = model.state_dict(), loaded.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[x], sb[x]) for x in sa)
    enc = tok2(["the dog is playing"], ["a dog plays"], return_tensors="pt")
    for t in ALL_TASKS:
        args = (enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        torch.testing.assert_close(loaded(t, *args), model(t, *args), rtol=0, atol=0)
    if arch == "static":
        assert not any(p.requires_grad for p in loaded.stacks["frozen"].parameters())


def test_load_model_rejects_mismatched_weights(tiny_base, tmp_path):
    model, tok, _ = build_model(tiny_base, "multi")
    save_model(model, tok, tmp_path / "m")
    cfg = (tmp_path / "m" / CONFIG_FILE)
    cfg.write_text(cfg.read_text().replace('"architecture": "multi"', '"architecture": "triple"'))
    with pytest.raises(EnsembleError, match="weights do not match the config"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize("name", ["pytorch_model.bin", "sub/weights.pt", "x.PKL"])
def test_pickle_files_refused(tiny_base, tmp_path, name):
    model, tok, _ = build_model(tiny_base, "multi")
    save_model(model, tok, tmp_path / "m")
    bad = tmp_path / "m" / name
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"\x80\x04not really a pickle")
    for call in (refuse_pickles, load_model):
        with pytest.raises(EnsembleError, match="safetensors") as e:
            call(tmp_path / "m")
        assert name.split("/")[-1] in str(e.value)


def test_the_one_safetensors_writer_turns_a_full_disk_into_enospc(tmp_path, monkeypatch):
    """Weights, optimizer state and checkpoints all go through save_tensors: safetensors' own error on a
    full disk (not an OSError) becomes ENOSPC, which the CLI reports as a full disk, not as a bug."""
    import errno

    import torch
    from safetensors import SafetensorError

    from ensemble.modeling import model as model_mod

    def full(*a, **k):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "
                              "\"No space left on device\" }) (os error 28)")
    monkeypatch.setattr(model_mod, "save_file", full)
    with pytest.raises(OSError) as e:
        model_mod.save_tensors({"w": torch.zeros(2)}, tmp_path / "x.safetensors")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "x.safetensors")
    monkeypatch.undo()
    model_mod.save_tensors({"w": torch.zeros(2)}, tmp_path / "a.safetensors")
    model_mod.save_tensors({"w": torch.zeros(2)}, tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
