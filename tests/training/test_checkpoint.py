"""The per-epoch resume checkpoint read at its boundary (issue 26): a damaged ``state.json``, a
damaged or pickled safetensors file, a checkpoint folder that is a file or a symlink: each refused
with one line naming the file and the field, before anything is loaded into the model."""
from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from ensemble.errors import EnsembleError
from ensemble.training import checkpoint as ckpt

EPOCH = {"epoch": 1, "train_loss": {"sst": 0.5}, "dev": {"sst": 0.4}, "seconds": 1.0, "tokens": 10,
         "candidate": None, "best_for": [], "lr": 0.001, "tokens_per_second": 10.0}
LOOP = {"epoch": 1, "step": 3, "best": {"sst": 0.4}, "best_mean": 0.4, "since_best": 0, "stopped": False,
        "epochs": [EPOCH]}


def _parts():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    return model, opt


@pytest.fixture
def folder(tmp_path):
    model, opt = _parts()
    d = tmp_path / "run" / "checkpoint"
    ckpt.write(d, model, opt, torch.Generator().manual_seed(1), None, ckpt.LoopState(**LOOP))
    return d


def _restore(folder):
    model, opt = _parts()
    return ckpt.restore(ckpt.find(folder), model, opt, torch.Generator(), None)


def test_a_whole_checkpoint_comes_back(folder):
    assert _restore(folder).to_dict() == LOOP and ckpt.read_loop(folder).to_dict() == LOOP


def _edit(folder, fn):
    state = json.loads((folder / ckpt.STATE).read_text())
    fn(state)
    (folder / ckpt.STATE).write_text(json.dumps(state))


STATES = {   # the edit, what the error says after "state.json: "
    "no rng": (lambda s: s.pop("rng"), "rng: missing"),
    "no optimizer_scalars": (lambda s: s.pop("optimizer_scalars"), "optimizer_scalars: missing"),
    "epoch a string": (lambda s: s["loop"].update(epoch="1"), "loop.epoch: expected an integer, got '1'"),
    "extra key in an epoch": (lambda s: s["loop"]["epochs"][0].update(bogus=1), "loop.epochs[0].bogus: unknown field"),
    "dev a string": (lambda s: s["loop"]["epochs"][0]["dev"].update(sst="fast"),
                     "loop.epochs[0].dev.sst: expected a number, got 'fast'"),
    "python rng short": (lambda s: s["rng"]["python"][1].pop(), "rng.python: expected 625 integers"),
    "python rng version": (lambda s: s["rng"]["python"].__setitem__(0, 9), "rng.python: expected Python's random"),
    "numpy rng kind": (lambda s: s["rng"]["numpy"].__setitem__(0, "PCG64"), "rng.numpy: expected [\"MT19937\""),
    "numpy rng a string": (lambda s: s["rng"].update(numpy="x"), "rng.numpy: expected a list, got 'x'"),
    "loop a list": (lambda s: s.update(loop=[]), "loop: expected an object, got []"),
    "epochs disagree": (lambda s: s["loop"].update(epoch=2), "loop.epochs: 1 epochs, expected loop.epoch's 2"),
    "best nan": (lambda s: s["loop"]["best"].update(sst=float("nan")), "loop.best.sst: expected a finite number"),
}


@pytest.mark.parametrize("case", STATES, ids=list(STATES))
def test_a_damaged_state_is_refused_naming_the_field(folder, case):
    edit, message = STATES[case]
    _edit(folder, edit)
    for read in (_restore, ckpt.read_loop):
        with pytest.raises(EnsembleError) as e:
            read(folder)
        assert str(e.value).startswith(f"{folder / ckpt.STATE}: {message}") and "\n" not in str(e.value), str(e.value)


def test_a_deeply_nested_state_is_refused(folder):
    (folder / ckpt.STATE).write_text('{"loop": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(EnsembleError, match=f"{folder / ckpt.STATE}: nested deeper than"):
        ckpt.read_loop(folder)


@pytest.mark.parametrize("name", [ckpt.WEIGHTS, ckpt.OPTIMIZER])
@pytest.mark.parametrize("damage", ["truncated", "empty", "pickled", "huge header"])
def test_a_damaged_tensor_file_is_refused_before_safetensors_opens_it(folder, name, damage):
    path = folder / name
    raw = path.read_bytes()
    path.write_bytes({"truncated": raw[: len(raw) // 2], "empty": b"", "pickled": pickle.dumps({"a": 1}),
                      "huge header": (2 ** 40).to_bytes(8, "little") + raw[8:]}[damage])
    with pytest.raises(EnsembleError, match=f"^{path}: "):
        _restore(folder)


def test_missing_rng_tensors_are_refused(folder):
    from safetensors.torch import load_file, save_file

    path = folder / ckpt.OPTIMIZER
    flat = {k: v for k, v in load_file(str(path)).items() if k != "rng.torch"}
    save_file(flat, str(path))
    with pytest.raises(EnsembleError, match=f"^{path}: tensor rng.torch: missing"):
        _restore(folder)


def test_weights_of_another_shape_are_refused(folder):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    with pytest.raises(EnsembleError, match=f"^{folder / ckpt.WEIGHTS}: weights do not match the model"):
        ckpt.restore(folder, model, opt, torch.Generator(), None)


@pytest.mark.parametrize("kind", ["file", "symlink", "symlink out", "old is a file"])
def test_a_checkpoint_folder_that_is_not_a_plain_folder_is_refused(tmp_path, folder, kind):
    if kind == "file":
        target = folder
        os.rename(folder, tmp_path / "moved")
        folder.write_text("x")
    elif kind == "old is a file":
        target = folder.with_name("checkpoint.old")
        target.write_text("x")
    else:
        target = folder
        os.rename(folder, tmp_path / "moved")
        folder.symlink_to(tmp_path / "moved" if kind == "symlink" else "/tmp")
    with pytest.raises(EnsembleError, match=f"^{target}: not a plain folder"):
        ckpt.find(folder)
    model, opt = _parts()
    with pytest.raises(EnsembleError, match=f"^{target}: not a plain folder"):
        ckpt.write(folder, model, opt, torch.Generator(), None, ckpt.LoopState(**LOOP))


# -- a pretraining run's checkpoint state -----------------------------------------------------------
PRETRAIN = {"step": 4, "settings": {"seed": 0}, "config": {}, "losses": [1.5, 1.2], "resumed": [], "seconds": 2.0,
            "perplexity_before": None, "head": "pretrained", "head_missing_keys": [], "optimizer_scalars": {}}


@pytest.mark.parametrize("edit, message", [
    ({"step": "4"}, "step: expected an integer, got '4'"),
    ({"step": -1}, "step: expected a number >= 0, got -1"),
    ({"losses": [1.0, "x"]}, "losses[1]: expected a number, got 'x'"),
    ({"losses": [float("nan")]}, "losses[0]: expected a finite number, got nan"),
    ({"settings": "x"}, "settings: expected an object, got 'x'"),
    ({"resumed": "3"}, "resumed: expected a list, got '3'"),
    ({"head": "other"}, "head: expected 'fresh' or 'pretrained', got 'other'"),
    ({"bogus": 1}, "bogus: unknown field"),
])
def test_a_damaged_pretraining_state_is_refused_naming_the_field(tmp_path, edit, message):
    from ensemble.training.mlm_checkpoint import read_state

    (tmp_path / "state.json").write_text(json.dumps({**PRETRAIN, **edit}))
    with pytest.raises(EnsembleError) as e:
        read_state(tmp_path)
    assert str(e.value).startswith(f"{tmp_path / 'state.json'}: {message}"), str(e.value)
    if not edit.get("bogus"):
        (tmp_path / "state.json").write_text(json.dumps(PRETRAIN))
        assert read_state(tmp_path).step == 4


def test_a_pretraining_checkpoint_that_is_a_file_is_refused(tmp_path):
    from ensemble.training.mlm_checkpoint import find_checkpoint

    (tmp_path / "checkpoint").write_text("x")
    with pytest.raises(EnsembleError, match=f"^{tmp_path / 'checkpoint'}: not a plain folder"):
        find_checkpoint(tmp_path)
