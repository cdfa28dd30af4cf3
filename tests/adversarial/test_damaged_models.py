"""Damaged weights and hand-made model folders (issue 13): each refused with one message naming the
file and what was found, before any loader reads it, and nothing is added to the registry."""
from __future__ import annotations

import json
import pickle
import shutil
import struct

import pytest

from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.errors import EnsembleError
from ensemble.files import check_safetensors
from ensemble.modeling.model import CONFIG_FILE, WEIGHTS_FILE, load_model
from ensemble.registry.register import register_model
from ensemble.registry.store import Registry
from fixtures_torch import saved_model_dir, tiny_base  # noqa: F401  (fixtures)


def _flip_header(b: bytes) -> bytes:
    out = bytearray(b)
    out[10] ^= 0xFF
    return bytes(out)


def _header(b: bytes, header: dict) -> bytes:
    n = struct.unpack("<Q", b[:8])[0]
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b[8 + n:]


def _first_tensor(b: bytes) -> tuple[dict, str]:
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return h, next(k for k in h if k != "__metadata__")


def _bad_dtype(b):
    h, k = _first_tensor(b)
    h[k]["dtype"] = "Q7"
    return _header(b, h)


def _bad_offsets(b):
    h, k = _first_tensor(b)
    h[k]["data_offsets"] = [0, 10 ** 12]
    return _header(b, h)


DAMAGE = {   # name: (how the bytes change, what the message says)
    "header byte flipped": (_flip_header, "safetensors header is not valid UTF-8 JSON"),
    "truncated": (lambda b: b[:100], "exceeds the file's 100 bytes"),
    "truncated to 3 bytes": (lambda b: b[:3], "3 bytes, too short for a safetensors file"),
    "a pickle under the name": (lambda b: pickle.dumps({"w": 1}), "a pickle (torch.save) file under a .safetensors name"),
    "a torch zip under the name": (lambda b: b"PK\x03\x04" + b"\0" * 50, "a pickle (torch.save) file"),
    "header length 2^62": (lambda b: struct.pack("<Q", 2 ** 62) + b[8:], "header length 4,611,686,018,427,387,904 bytes"),
    "header a list": (lambda b: _header(b, []), "header is not a JSON object"),
    "unknown dtype": (_bad_dtype, "unknown dtype 'Q7'"),
    "offsets past the end": (_bad_offsets, "do not fit its shape"),
}


@pytest.fixture
def model_copy(saved_model_dir, tmp_path):
    return shutil.copytree(saved_model_dir, tmp_path / "model")


def test_a_whole_file_passes(saved_model_dir):
    check_safetensors(saved_model_dir / WEIGHTS_FILE)


@pytest.mark.parametrize("case", DAMAGE, ids=list(DAMAGE))
def test_damaged_weights_are_refused_before_loading(model_copy, case):
    damage, message = DAMAGE[case]
    f = model_copy / WEIGHTS_FILE
    f.write_bytes(damage(f.read_bytes()))
    with pytest.raises(EnsembleError, match="refused|damaged|truncated|too short|pickle") as e:
        check_safetensors(f)
    assert str(f) in str(e.value) and message in str(e.value), str(e.value)
    with pytest.raises(EnsembleError) as e2:
        load_model(model_copy)
    assert str(e2.value) == str(e.value)


def test_deleted_weights(model_copy):
    (model_copy / WEIGHTS_FILE).unlink()
    with pytest.raises(EnsembleError, match=f"{model_copy / WEIGHTS_FILE}: missing"):
        load_model(model_copy)


def _edit_config(folder, **encoder):
    f = folder / CONFIG_FILE
    c = json.loads(f.read_text())
    c["encoder"] = encoder.pop("whole") if "whole" in encoder else {**c["encoder"], **encoder}
    f.write_text(json.dumps(c))
    return f


@pytest.mark.parametrize("edit, message", [
    ({"model_type": "nosuchmodel"}, "model_type 'nosuchmodel' is not a transformers architecture"),
    ({"model_type": "bert", "auto_map": {"AutoModel": "evil.Model"}}, "custom code is never run"),
    ({"whole": "bert"}, "stored encoder config is str; expected a JSON object"),
    ({"hidden_size": "big"}, "stored encoder config (bert) is not valid"),
])
def test_bad_encoder_configs(model_copy, edit, message):
    f = _edit_config(model_copy, **edit)
    with pytest.raises(EnsembleError) as e:
        load_model(model_copy)
    assert str(e.value).startswith(f"{f}: ") and message in str(e.value), str(e.value)


@pytest.mark.parametrize("text, message", [("{bad", "not valid JSON"),
                                           ("[1]", r"\(the document\): expected an object, got \[1\]; expected the manifest"),
                                           ('{"model": "x"}', "model: expected an object, got 'x'")])
def test_exported_candidate_with_a_bad_manifest_adds_nothing(model_copy, tmp_path, text, message):
    exported = tmp_path / "exported"
    shutil.copytree(model_copy, exported / "model")
    (exported / "candidate.json").write_text(text)
    reg = Registry(tmp_path / "reg")
    with pytest.raises(EnsembleError, match=message):
        register_model(reg, exported, SAMPLE, device="cpu")
    assert not (tmp_path / "reg" / "candidates").exists() or not any((tmp_path / "reg" / "candidates").iterdir())


@pytest.mark.parametrize("exported", [False, True], ids=["model folder", "exported candidate"])
def test_a_model_without_weights_adds_nothing(model_copy, tmp_path, exported):
    (model_copy / WEIGHTS_FILE).unlink()
    source = model_copy
    if exported:                                  # a candidate folder copied from another registry
        source = tmp_path / "exported"
        shutil.copytree(model_copy, source / "model")
        (source / "candidate.json").write_text('{"name": "exported"}')
    reg = Registry(tmp_path / "reg")
    with pytest.raises(EnsembleError, match="model.safetensors: missing"):
        register_model(reg, source, SAMPLE, device="cpu")
    assert not reg.exists or reg.candidates() == []


def test_a_header_length_that_begins_like_a_pickle_passes(tmp_path):
    """A header of 0x80 + 256k bytes starts the file with pickle's protocol byte; it is a safetensors file."""
    import torch
    from safetensors.torch import save_file
    f = tmp_path / WEIGHTS_FILE
    for pad in range(0, 600):
        save_file({"w": torch.zeros(2)}, str(f), metadata={"format": "pt", "x": "y" * pad})
        if f.read_bytes()[:1] == b"\x80":
            break
    assert f.read_bytes()[:1] == b"\x80"
    check_safetensors(f)
