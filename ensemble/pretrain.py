"""Further masked-language-model pretraining of an encoder on the tasks' own text.

``pretrain()`` continues BERT-style MLM training of a base encoder on the sentences of the chosen
tasks' training files (optionally also the unlabelled dev and test inputs) and writes an encoder
directory that ``ensemble train --base DIR`` accepts.

Method
------
* Sequences: one per example, encoded as the fine-tuning code encodes it: ``[CLS] s [SEP]`` for
  SST, ``[CLS] a [SEP] b [SEP]`` with token type ids for pairs. No next-sentence task.
* Masking (BERT): each non-special, non-padding token is chosen with probability ``mask_prob``
  (15%); a chosen token becomes ``[MASK]`` with probability 0.8, a random non-special vocabulary
  token with probability 0.1, and stays unchanged with probability 0.1. The loss is cross
  entropy on the chosen tokens only. Special tokens (``[CLS]``, ``[SEP]``, ``[PAD]``,
  ``[UNK]``, ``[MASK]``) and padding are never chosen. If a batch would have no chosen token, its
  eligible token with the smallest draw is chosen (no empty loss).
* Determinism: the data order of an epoch is a pure function of ``(seed, epoch)``; the masks and
  the dropout of a step are a pure function of ``(seed, step)``. A run resumed from a checkpoint
  therefore reproduces the uninterrupted run exactly (same order, same masks, same dropout).
* Head: the encoder's own MLM head (``AutoModelForMaskedLM``) when the base checkpoint holds its
  weights ("pretrained"), else a freshly initialised one ("fresh"); the result, the provenance
  file and ``progress.note`` say which.
* Optimiser: AdamW, weight decay on weight matrices (not biases / LayerNorm), layer-wise
  learning rates as in fine-tuning: the top encoder layer gets ``lr``, each lower layer ``lr``
  times ``layer_decay`` once more, the embeddings one step below the bottom layer
  (``lr * layer_decay ** n_layers``; the word embeddings are tied to the head's decoder and get
  that rate), the rest of the MLM head ``lr``. Learning rate: linear warm-up over
  ``warmup_steps``, then constant (so a run can be extended with ``resume`` and still equal a
  longer uninterrupted run). Gradients clipped to ``max_grad_norm``.

Output (``out``)
----------------
``config.json``, ``model.safetensors`` (the ``*ForMaskedLM`` weights plus the base's pooler, which
MLM training does not use and transformers' MLM classes drop; loading with ``AutoModel`` strips
the model prefix and takes the trained encoder and the base's pooler), tokenizer files, and
``ensemble_pretrain.json`` (provenance). ``out/checkpoint/`` holds the last checkpoint (model,
AdamW state as safetensors tensors + JSON, step), written aside and renamed into place. No
pickle files are ever written.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from . import data as data_mod
from .bases import quiet_transformers as _quiet_transformers
from .bases import resolve_base
from .batches import max_length_for
from .errors import EnsembleError
from .infer import pick_device
from .files import refuse_pickles
from .progress import NULL, Progress
from .tasks import TASK_NAMES, TASKS

__all__ = [
    "PretrainResult",
    "pretrain",
    "perplexity",
    "mask_tokens",
    "epoch_batches",
    "step_seed",
    "PROVENANCE_FILE",
    "CHECKPOINT_DIR",
]

PROVENANCE_FILE = "ensemble_pretrain.json"
CHECKPOINT_DIR = "checkpoint"
WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"
STATE = "state.json"
MASK_TOKEN_FRAC = 0.8
RANDOM_TOKEN_FRAC = 0.1
PERPLEXITY_SEED = 0
BUCKET = 50  # length buckets of BUCKET batches, as in fine-tuning


# -- result -----------------------------------------------------------------------------------
@dataclass
class PretrainResult:
    out: Path
    base: str
    tasks: tuple[str, ...]
    steps: int                      # steps done in total (after this call)
    steps_run: int                  # steps run by this call
    resumed_from: int | None        # the checkpoint step this call started from, if resumed
    head: str                       # "pretrained" (the base's own MLM head) or "fresh"
    head_missing_keys: list[str]
    sequences: int                  # training sequences in the corpus
    epochs: float                   # passes over the corpus done in total
    data: dict[str, str]            # training file name -> sha256
    losses: list[float]             # per-step training loss, all steps done so far
    perplexity_before: float | None
    perplexity_after: float | None
    perplexity_texts: str | None    # what the perplexity was measured on
    perplexity_held_out: bool | None
    seconds: float                  # wall time of this call's training steps
    device: str
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def final_loss(self) -> float | None:
        tail = self.losses[-50:]
        return float(np.mean(tail)) if tail else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"] = str(self.out)
        d["tasks"] = list(self.tasks)
        d["final_loss"] = self.final_loss
        return d


# -- pure functions of the seed ---------------------------------------------------------------
def step_seed(seed: int, step: int, stream: int) -> int:
    """A 63-bit seed for (seed, step, stream); streams: 1 masks, 2 dropout."""
    return int(np.random.SeedSequence([int(seed), int(step), int(stream)]).generate_state(2, np.uint64)[0] >> 1)


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The batches (row indices) of one epoch: a pure function of ``(seed, epoch)``.

    Shuffle, sort by length within buckets of ``BUCKET`` batches, cut, shuffle the batches. Every
    row appears exactly once; there are always ``ceil(n / batch_size)`` batches.
    """
    n = len(lengths)
    rng = np.random.default_rng([int(seed), int(epoch)])
    order = rng.permutation(n)
    span = batch_size * BUCKET
    batches: list[np.ndarray] = []
    for start in range(0, n, span):
        chunk = order[start:start + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        for b in range(0, len(chunk), batch_size):
            batches.append(chunk[b:b + batch_size])
    perm = rng.permutation(len(batches))
    return [batches[i] for i in perm]


def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    special_ids: Sequence[int],
    mask_token_id: int,
    replacement_ids: torch.Tensor,
    generator: torch.Generator,
    mask_prob: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of a padded CPU batch; returns ``(corrupted input ids, labels)``.

    ``labels`` holds the original id at chosen positions and -100 elsewhere. Positions with
    ``attention_mask == 0`` (padding) and ids in ``special_ids`` are never chosen. Of the chosen
    tokens 80% become ``mask_token_id``, 10% a token drawn uniformly from ``replacement_ids``,
    10% stay. All draws come from ``generator`` over the full batch shape, so the result is a
    pure function of the generator's seed and the batch.
    """
    shape = input_ids.shape
    u_choose = torch.rand(shape, generator=generator)
    u_kind = torch.rand(shape, generator=generator)
    rand_idx = torch.randint(len(replacement_ids), shape, generator=generator)
    special = torch.isin(input_ids, torch.as_tensor(list(special_ids), dtype=input_ids.dtype))
    eligible = attention_mask.bool() & ~special
    chosen = eligible & (u_choose < mask_prob)
    if not bool(chosen.any()) and bool(eligible.any()):
        pos = torch.where(eligible, u_choose, torch.full_like(u_choose, 2.0)).reshape(-1).argmin()
        chosen.view(-1)[pos] = True
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    corrupted = input_ids.clone()
    to_mask = chosen & (u_kind < MASK_TOKEN_FRAC)
    to_random = chosen & (u_kind >= MASK_TOKEN_FRAC) & (u_kind < MASK_TOKEN_FRAC + RANDOM_TOKEN_FRAC)
    corrupted[to_mask] = mask_token_id
    corrupted[to_random] = replacement_ids.to(input_ids.dtype)[rand_idx[to_random]]
    return corrupted, labels


# -- model plumbing ---------------------------------------------------------------------------
def _hf_kwargs(base_path: str) -> dict[str, Any]:
    return {} if Path(base_path).exists() else {"local_files_only": True}


def _check_base_dir(base: str, base_path: str) -> None:
    p = Path(base_path)
    if p.exists():
        if not p.is_dir():
            raise EnsembleError(f"--base {base}: expected a model directory (config.json + safetensors)")
        refuse_pickles(p)
        if not (p / "config.json").is_file():
            raise EnsembleError(f"--base {base}: no config.json in {p}; expected a transformers model directory")


def _load_mlm(base: str, base_path: str):
    """(MLM model, tokenizer, head missing keys, pooler state dict of the base encoder or {})."""
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

    _check_base_dir(base, base_path)
    kw = _hf_kwargs(base_path)
    try:
        with _quiet_transformers():
            mlm, info = AutoModelForMaskedLM.from_pretrained(
                base_path, output_loading_info=True, attn_implementation="sdpa", use_safetensors=True,
                dtype=torch.float32, **kw)
            tokenizer = AutoTokenizer.from_pretrained(base_path, use_fast=True, **kw)
    except EnsembleError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise EnsembleError(
            f"--base {base}: could not load a masked-language model ({str(e).splitlines()[0] if str(e) else e!r}). "
            "Pass a local BERT-family model directory (config.json + model.safetensors + tokenizer), "
            "or --base minilm for the offline MiniLM stand-in"
        ) from e
    if not getattr(tokenizer, "is_fast", False):
        raise EnsembleError(f"--base {base}: a fast tokenizer (tokenizer.json) is required")
    if tokenizer.mask_token_id is None:
        raise EnsembleError(f"--base {base}: the tokenizer has no mask token; expected a BERT-style tokenizer")
    prefix = mlm.base_model_prefix
    encoder = mlm.base_model
    if encoder is mlm or getattr(getattr(encoder, "encoder", None), "layer", None) is None \
            or getattr(encoder, "embeddings", None) is None:
        raise EnsembleError(
            f"--base {base}: {type(mlm).__name__} is not a BERT-family encoder with `embeddings` and "
            "`encoder.layer` modules"
        )
    missing = sorted(info.get("missing_keys", []))
    enc_missing = [k for k in missing if k.startswith(prefix + ".")]
    if enc_missing:
        raise EnsembleError(
            f"--base {base}: the checkpoint lacks encoder weights (e.g. {enc_missing[:3]}); "
            "expected a pretrained encoder"
        )
    # The base encoder's pooler: the MLM class has none, the fine-tuning code uses it.
    pooler_sd: dict[str, torch.Tensor] = {}
    if getattr(encoder, "pooler", None) is None:
        try:
            with _quiet_transformers():
                plain, pinfo = AutoModel.from_pretrained(base_path, output_loading_info=True, use_safetensors=True,
                                                         dtype=torch.float32, **kw)
        except (OSError, ValueError, KeyError) as e:  # pragma: no cover - the MLM load succeeded
            raise EnsembleError(f"--base {base}: could not load the encoder ({e})") from e
        pooler = getattr(plain, "pooler", None)
        pooler_missing = [k for k in pinfo.get("missing_keys", []) if k.startswith("pooler.")]
        if pooler is not None and not pooler_missing:
            pooler_sd = {f"{prefix}.pooler.{k}": v.detach().clone() for k, v in pooler.state_dict().items()}
        del plain
    return mlm, tokenizer, missing, pooler_sd


def _head_module(mlm) -> nn.Module | None:
    """The MLM head taking hidden states (BERT ``cls``, RoBERTa ``lm_head``), else None."""
    for name in ("cls", "lm_head"):
        m = getattr(mlm, name, None)
        if isinstance(m, nn.Module):
            return m
    return None


def _mlm_loss_sum(mlm, input_ids, attention_mask, token_type_ids, labels) -> tuple[torch.Tensor, int]:
    """Sum of cross entropy over the chosen tokens and their count (logits only where chosen)."""
    chosen = labels != -100
    n = int(chosen.sum())
    head = _head_module(mlm)
    kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
    if head is not None:
        hidden = mlm.base_model(input_ids=input_ids, attention_mask=attention_mask, **kw)[0]
        logits = head(hidden[chosen])
    else:  # generic path: full logits
        logits = mlm(input_ids=input_ids, attention_mask=attention_mask, **kw).logits[chosen]
    loss = nn.functional.cross_entropy(logits.float(), labels[chosen], reduction="sum")
    return loss, n


def _param_groups(mlm, lr: float, layer_decay: float, weight_decay: float) -> list[dict[str, Any]]:
    encoder = mlm.base_model
    layers = encoder.encoder.layer
    n = len(layers)
    rate: dict[int, float] = {}
    for p in encoder.embeddings.parameters():
        rate[id(p)] = lr * layer_decay ** n
    for i, layer in enumerate(layers):
        for p in layer.parameters():
            rate[id(p)] = lr * layer_decay ** (n - 1 - i)
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for name, p in mlm.named_parameters():  # tied parameters appear once
        if not p.requires_grad:
            continue
        plr = rate.get(id(p), lr)
        no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name or name.endswith(".bias")
        wd = 0.0 if no_decay else weight_decay
        g = groups.setdefault((plr, wd), {"params": [], "names": [], "lr": plr, "base_lr": plr, "weight_decay": wd})
        g["params"].append(p)
        g["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def _unique_state(mlm) -> dict[str, torch.Tensor]:
    """The model's state dict without tied duplicates (safetensors refuses shared storage)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for k, v in mlm.state_dict().items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset())
        if key in seen:
            continue
        seen.add(key)
        out[k] = v.detach().contiguous().cpu()
    return out


# -- corpus -----------------------------------------------------------------------------------
@dataclass
class _Corpus:
    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    files: dict[str, str]            # file name -> sha256
    counts: dict[str, int]           # file name -> sequences

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))


def _texts_of(split) -> list[str | tuple[str, str]]:
    if TASKS[split.task].pair:
        return [(e.text_a, e.text_b or "") for e in split.examples]
    return [e.text_a for e in split.examples]


def _tokenize(tokenizer, texts: Sequence[str | tuple[str, str]], max_length: int) -> tuple[list, list]:
    if not texts:
        return [], []
    kw = dict(truncation=True, max_length=max_length, return_attention_mask=False, return_token_type_ids=True)
    singles = [i for i, t in enumerate(texts) if isinstance(t, str)]
    pairs = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    ids: list = [None] * len(texts)
    types: list = [None] * len(texts)
    if singles:
        enc = tokenizer([texts[i] for i in singles], **kw)
        for j, i in enumerate(singles):
            ids[i], types[i] = enc["input_ids"][j], enc["token_type_ids"][j]
    if pairs:
        enc = tokenizer([texts[i][0] for i in pairs], [texts[i][1] for i in pairs], **kw)
        for j, i in enumerate(pairs):
            ids[i], types[i] = enc["input_ids"][j], enc["token_type_ids"][j]
    return ids, types


def _collate(input_ids: Sequence[list[int]], token_type_ids: Sequence[list[int]], pad_id: int):
    width = max(len(s) for s in input_ids)
    n = len(input_ids)
    ids = np.full((n, width), pad_id, dtype=np.int64)
    tt = np.zeros((n, width), dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    for i, (s, t) in enumerate(zip(input_ids, token_type_ids)):
        ids[i, :len(s)] = s
        tt[i, :len(t)] = t
        mask[i, :len(s)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(tt)


def _special_ids(tokenizer) -> list[int]:
    return sorted({int(i) for i in tokenizer.all_special_ids if i is not None})


def _replacement_ids(tokenizer, vocab_size: int) -> torch.Tensor:
    special = set(_special_ids(tokenizer))
    size = min(len(tokenizer), vocab_size)
    ids = torch.tensor([i for i in range(size) if i not in special], dtype=torch.long)
    if len(ids) == 0:
        raise EnsembleError("the tokenizer has no non-special tokens to draw random replacements from")
    return ids


# -- perplexity -------------------------------------------------------------------------------
@torch.no_grad()
def perplexity(
    model: str | Path | nn.Module,
    tokenizer=None,
    texts: Sequence[str | tuple[str, str]] = (),
    *,
    batch_size: int = 64,
    mask_prob: float = 0.15,
    seed: int = PERPLEXITY_SEED,
    max_length: int | None = None,
    device: str | torch.device | None = None,
    allow_fresh_head: bool = False,
) -> float:
    """MLM perplexity ``exp(mean cross entropy over the chosen tokens)`` on ``texts``.

    ``model``: a ``*ForMaskedLM`` model, or a model directory (loaded with its MLM head; a
    directory without MLM head weights is refused unless ``allow_fresh_head``). ``tokenizer``:
    defaults to the directory's. ``texts``: sentences or ``(a, b)`` pairs. The masking is the
    training masking (15% chosen; 80/10/10) drawn from a generator seeded with ``seed`` over
    length-sorted batches, so the same texts and tokenizer always get the same masks: numbers
    before and after training are comparable. The model runs in eval mode (no dropout) and is
    left in the mode it was in.
    """
    if isinstance(model, (str, Path)):
        path = resolve_base(str(model))
        mlm, tok, missing, _ = _load_mlm(str(model), path)
        head_missing = [k for k in missing if not k.startswith(mlm.base_model_prefix + ".")]
        if head_missing and not allow_fresh_head:
            raise EnsembleError(
                f"{model}: the checkpoint has no MLM head weights (missing {head_missing[:3]}); its "
                "perplexity would measure a random head. Pretrain it first (ensemble pretrain), or "
                "pass allow_fresh_head=True"
            )
        tokenizer = tokenizer or tok
    else:
        mlm = model
        if tokenizer is None:
            raise EnsembleError("perplexity: a tokenizer is required with an in-memory model")
    if not texts:
        raise EnsembleError("perplexity: no texts to measure")
    dev = pick_device(device) if device is not None else next(mlm.parameters()).device
    was_training = mlm.training
    mlm.to(dev).eval()
    max_len = max_length_for(tokenizer, mlm.config, max_length)
    ids, types = _tokenize(tokenizer, list(texts), max_len)
    lengths = np.array([len(x) for x in ids])
    order = np.argsort(lengths, kind="stable")
    gen = torch.Generator().manual_seed(int(seed))
    special = _special_ids(tokenizer)
    repl = _replacement_ids(tokenizer, mlm.config.vocab_size)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total, count = 0.0, 0
    try:
        for s in range(0, len(order), batch_size):
            rows = order[s:s + batch_size]
            x, m, t = _collate([ids[r] for r in rows], [types[r] for r in rows], pad)
            xin, labels = mask_tokens(x, m, special_ids=special, mask_token_id=tokenizer.mask_token_id,
                                      replacement_ids=repl, generator=gen, mask_prob=mask_prob)
            loss, n = _mlm_loss_sum(mlm, xin.to(dev), m.to(dev), t.to(dev), labels.to(dev))
            total += float(loss)
            count += n
    finally:
        mlm.train(was_training)
    if count == 0:
        raise EnsembleError("perplexity: the texts hold no maskable tokens")
    return math.exp(total / count)


# -- checkpoints ------------------------------------------------------------------------------
def _save_optimizer(optimizer: torch.optim.Optimizer, directory: Path) -> dict[str, Any]:
    """AdamW state tensors into ``optimizer.safetensors``; scalars returned for the JSON state."""
    from safetensors.torch import save_file

    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{idx}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    save_file(tensors, str(directory / OPTIMIZER), metadata={"format": "pt", "producer": "ensemble pretrain"})
    return scalars


def _load_optimizer(optimizer: torch.optim.Optimizer, directory: Path, scalars: dict[str, Any]) -> None:
    from safetensors.torch import load_file

    flat = load_file(str(directory / OPTIMIZER), device="cpu")
    state: dict[int, dict[str, Any]] = {}
    for key, v in flat.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    for idx, st in scalars.items():
        state.setdefault(int(idx), {}).update(st)
    current = optimizer.state_dict()
    n_params = sum(len(g["params"]) for g in current["param_groups"])
    if any(i >= n_params for i in state):
        raise EnsembleError(f"{directory}: optimizer state does not match the model (more parameters saved)")
    optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})


def _write_checkpoint(out: Path, mlm, pooler_sd: dict, optimizer, state: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    final = out / CHECKPOINT_DIR
    tmp = out / f"{CHECKPOINT_DIR}.tmp"
    old = out / f"{CHECKPOINT_DIR}.old"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    weights = {**_unique_state(mlm), **pooler_sd}
    save_file(weights, str(tmp / WEIGHTS), metadata={"format": "pt", "producer": "ensemble pretrain"})
    state = dict(state)
    state["optimizer_scalars"] = _save_optimizer(optimizer, tmp)
    (tmp / STATE).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def _find_checkpoint(out: Path) -> Path | None:
    for name in (CHECKPOINT_DIR, f"{CHECKPOINT_DIR}.old"):  # .old: a crash between the renames
        d = out / name
        if (d / STATE).is_file() and (d / WEIGHTS).is_file() and (d / OPTIMIZER).is_file():
            return d
    return None


def _load_checkpoint_weights(mlm, directory: Path) -> dict[str, torch.Tensor]:
    """Load the checkpoint weights into ``mlm``; return the pooler tensors stored beside them."""
    from safetensors.torch import load_file

    sd = load_file(str(directory / WEIGHTS), device="cpu")
    model_keys = set(mlm.state_dict())
    pooler = {k: v for k, v in sd.items() if k not in model_keys}
    rest = {k: v for k, v in sd.items() if k in model_keys}
    missing, _ = mlm.load_state_dict(rest, strict=False)
    # tied aliases (e.g. the decoder weight) are loaded through the parameter they share
    current = mlm.state_dict()

    def where(t: torch.Tensor) -> tuple[int, int]:
        return t.untyped_storage().data_ptr(), t.storage_offset()

    loaded = {where(current[k]) for k in rest}
    really = [k for k in missing if where(current[k]) not in loaded]
    if really:
        raise EnsembleError(f"{directory / WEIGHTS}: checkpoint lacks weights {really[:3]}; it does not match the base")
    return pooler


# -- export -----------------------------------------------------------------------------------
def _export(out: Path, mlm, tokenizer, pooler_sd: dict, provenance: dict[str, Any]) -> None:
    """Write the encoder directory: files staged aside, then renamed into ``out``."""
    staging = out / ".export.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    state = {k: v.detach().contiguous().cpu() for k, v in mlm.state_dict().items()}
    state.update(pooler_sd)
    with _quiet_transformers():
        mlm.save_pretrained(str(staging), state_dict=state)
        tokenizer.save_pretrained(str(staging))
    (staging / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    refuse_pickles(staging)
    files = sorted(p for p in staging.iterdir() if p.is_file() and p.name != PROVENANCE_FILE)
    if (out / PROVENANCE_FILE).exists():  # the directory is incomplete until the provenance is back
        (out / PROVENANCE_FILE).unlink()
    for p in files + [staging / PROVENANCE_FILE]:
        os.replace(p, out / p.name)
    shutil.rmtree(staging)


# -- the training loop ------------------------------------------------------------------------
def _read_corpus(data_dir: Path, tasks: Sequence[str], include_eval_inputs: bool, tokenizer, max_len: int,
                 progress: Progress) -> _Corpus:
    ids: list[list[int]] = []
    types: list[list[int]] = []
    files: dict[str, str] = {}
    counts: dict[str, int] = {}
    splits = ("train", "dev", "test") if include_eval_inputs else ("train",)
    for t in tasks:
        for s in splits:
            path = data_mod.input_path(data_dir, t, s)
            if s == "test" and not path.is_file():
                progress.note(f"{path.name}: not found; pretraining without the {t} test inputs")
                continue
            sp = data_mod.read_split(data_dir, t, s)
            a, b = _tokenize(tokenizer, _texts_of(sp), max_len)
            ids += a
            types += b
            files[sp.path.name] = sp.sha256
            counts[sp.path.name] = len(a)
    if not ids:
        raise EnsembleError(f"{data_dir}: the {', '.join(tasks)} files hold no sentences to pretrain on")
    return _Corpus(ids, types, files, counts)


def _eval_texts(data_dir: Path, tasks: Sequence[str], limit: int) -> tuple[list, dict[str, str], str]:
    texts: list = []
    files: dict[str, str] = {}
    parts = []
    for t in tasks:
        sp = data_mod.read_split(data_dir, t, "dev")
        tx = _texts_of(sp)[:limit]
        texts += tx
        files[sp.path.name] = sp.sha256
        parts.append(f"{t} dev ({len(tx)} of {len(sp)})")
    return texts, files, ", ".join(parts)


def pretrain(
    data_dir: str | Path,
    base: str,
    tasks: Sequence[str] | str,
    steps: int,
    out: str | Path,
    *,
    lr: float = 5e-5,
    layer_decay: float = 1.0,
    batch_size: int = 32,
    seed: int = 0,
    checkpoint_every: int = 500,
    include_eval_inputs: bool = False,
    mask_prob: float = 0.15,
    max_length: int | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: Progress = NULL,
    weight_decay: float = 0.01,
    warmup_steps: int = 0,
    max_grad_norm: float = 1.0,
    perplexity_limit: int = 2000,
) -> PretrainResult:
    """Further MLM pretraining of ``base`` on the text of ``tasks``; writes an encoder into ``out``.

    ``steps`` is the total number of optimiser steps (a resumed run continues to it).
    ``checkpoint_every``: checkpoint every K steps (0: only at the end; the last step is always
    checkpointed). ``perplexity_limit``: measure MLM perplexity before and after on at most this
    many dev inputs per task (0: do not measure); held out unless ``include_eval_inputs``.
    See the module docstring for the method and the output.
    """
    data_dir = Path(data_dir)
    out = Path(out)
    if isinstance(tasks, str):
        from .tasks import parse_tasks

        tasks = parse_tasks(tasks)
    bad = [t for t in tasks if t not in TASKS]
    if not tasks or bad:
        raise EnsembleError(f"--tasks {','.join(map(str, tasks))}: expected a non-empty subset of {','.join(TASK_NAMES)}")
    tasks = tuple(t for t in TASK_NAMES if t in set(tasks))
    if steps < 1:
        raise EnsembleError(f"--steps {steps}: expected at least 1")
    if batch_size < 1:
        raise EnsembleError(f"--batch-size {batch_size}: expected at least 1")
    if not 0.0 < mask_prob < 1.0:
        raise EnsembleError(f"--mask-prob {mask_prob}: expected a probability between 0 and 1 (BERT: 0.15)")
    if not lr > 0:
        raise EnsembleError(f"--lr {lr}: expected a positive learning rate")
    if not 0.0 < layer_decay <= 1.0:
        raise EnsembleError(f"--layer-decay {layer_decay}: expected a factor in (0, 1]")
    if checkpoint_every < 0 or warmup_steps < 0:
        raise EnsembleError("--checkpoint-every and warm-up steps must not be negative")
    if not data_dir.is_dir():
        raise EnsembleError(f"--data {data_dir}: not a directory; expected the folder of the course files")

    ckpt_dir: Path | None = None
    if resume:
        ckpt_dir = _find_checkpoint(out) if out.is_dir() else None
        if ckpt_dir is None:
            raise EnsembleError(
                f"--resume: no checkpoint in {out / CHECKPOINT_DIR} (expected {STATE}, {WEIGHTS}, {OPTIMIZER}); "
                "run without --resume to start"
            )
    elif out.exists():
        if not out.is_dir():
            raise EnsembleError(f"--out {out}: exists and is not a directory")
        if any(out.iterdir()):
            raise EnsembleError(
                f"--out {out}: directory exists and is not empty; pass --resume to continue the run saved "
                "there, or choose a new directory"
            )

    dev = pick_device(device)
    base_path = resolve_base(base)
    torch.manual_seed(int(seed))  # a fresh head is initialised from the seed
    mlm, tokenizer, missing, pooler_sd = _load_mlm(base, base_path)
    mlm.to(dev)  # before the optimizer state is loaded: it is cast to the parameters' device
    prefix = mlm.base_model_prefix
    head_missing = [k for k in missing if not k.startswith(prefix + ".")]
    head = "fresh" if head_missing else "pretrained"
    base_provenance = None
    if (Path(base_path) / PROVENANCE_FILE).is_file():
        try:
            base_provenance = json.loads((Path(base_path) / PROVENANCE_FILE).read_text())
        except ValueError:
            base_provenance = None
    max_len = max_length_for(tokenizer, mlm.config, max_length)
    corpus = _read_corpus(data_dir, tasks, include_eval_inputs, tokenizer, max_len, progress)
    lengths = corpus.lengths
    n_seq = len(lengths)
    per_epoch = math.ceil(n_seq / batch_size)

    settings = {
        "base": base, "base_path": str(base_path), "tasks": list(tasks), "data": corpus.files,
        "include_eval_inputs": bool(include_eval_inputs), "seed": int(seed), "batch_size": int(batch_size),
        "lr": float(lr), "layer_decay": float(layer_decay), "weight_decay": float(weight_decay),
        "warmup_steps": int(warmup_steps), "max_grad_norm": float(max_grad_norm),
        "mask_prob": float(mask_prob), "max_length": int(max_len),
    }

    groups = _param_groups(mlm, lr, layer_decay, weight_decay)
    optimizer = torch.optim.AdamW([{k: v for k, v in g.items() if k != "names"} for g in groups],
                                  lr=lr, betas=(0.9, 0.999), eps=1e-6, weight_decay=weight_decay)

    start_step = 0
    losses: list[float] = []
    resumed: list[int] = []
    ppl_before: float | None = None
    prev_seconds = 0.0
    if ckpt_dir is not None:
        state = json.loads((ckpt_dir / STATE).read_text())
        diff = {k: (state.get("settings", {}).get(k), v) for k, v in settings.items()
                if k != "base_path" and state.get("settings", {}).get(k) != v}
        if diff:
            lines = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise EnsembleError(
                f"--resume {out}: the run's settings differ from the checkpoint's ({lines}); resume with the "
                "same settings (only --steps and --checkpoint-every may change), or start a new directory"
            )
        start_step = int(state["step"])
        if start_step > steps:
            raise EnsembleError(
                f"--resume {out}: the checkpoint is at step {start_step}, beyond --steps {steps}; expected "
                f"--steps {start_step} or more"
            )
        pooler_sd = _load_checkpoint_weights(mlm, ckpt_dir) or pooler_sd
        _load_optimizer(optimizer, ckpt_dir, state.get("optimizer_scalars", {}))
        losses = [float(x) for x in state.get("losses", [])]
        resumed = [int(x) for x in state.get("resumed", [])] + [start_step]
        ppl_before = state.get("perplexity_before")
        prev_seconds = float(state.get("seconds", 0.0))
        head = state.get("head", head)
        head_missing = state.get("head_missing_keys", head_missing)
    else:
        out.mkdir(parents=True, exist_ok=True)

    eval_texts, eval_files, eval_desc = ([], {}, None)
    if perplexity_limit > 0:
        eval_texts, eval_files, eval_desc = _eval_texts(data_dir, tasks, perplexity_limit)

    if head == "fresh":
        progress.note(f"MLM head: freshly initialised (the base checkpoint has no MLM head weights: "
                      f"{', '.join(head_missing[:4])}{' ...' if len(head_missing) > 4 else ''})")
    else:
        progress.note("MLM head: the base checkpoint's own pretrained head")
    if resumed:
        progress.note(f"resuming from the checkpoint at step {start_step} of {steps}")
    if eval_texts and ppl_before is None:
        ppl_before = perplexity(mlm, tokenizer, eval_texts, batch_size=64, mask_prob=mask_prob, max_length=max_len)
        progress.note(f"MLM perplexity before: {ppl_before:.2f} on {eval_desc}")

    special = _special_ids(tokenizer)
    repl = _replacement_ids(tokenizer, mlm.config.vocab_size)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    mask_id = int(tokenizer.mask_token_id)
    all_params = [p for g in optimizer.param_groups for p in g["params"]]

    def state_now(step: int, seconds: float) -> dict[str, Any]:
        return {"step": step, "settings": settings, "losses": losses, "resumed": resumed,
                "perplexity_before": ppl_before, "head": head, "head_missing_keys": head_missing,
                "seconds": seconds}

    progress.start("pretrain", steps)
    if start_step:
        progress.advance(start_step)
    t_train = time.perf_counter()
    cached_epoch, cached_batches = -1, []
    step = start_step
    try:
        mlm.train()
        while step < steps:
            epoch, i = divmod(step, per_epoch)
            if epoch != cached_epoch:
                cached_epoch, cached_batches = epoch, epoch_batches(lengths, batch_size, seed, epoch)
            rows = cached_batches[i]
            x, m, t = _collate([corpus.input_ids[r] for r in rows], [corpus.token_type_ids[r] for r in rows], pad)
            gen = torch.Generator().manual_seed(step_seed(seed, step, 1))
            xin, labels = mask_tokens(x, m, special_ids=special, mask_token_id=mask_id, replacement_ids=repl,
                                      generator=gen, mask_prob=mask_prob)
            torch.manual_seed(step_seed(seed, step, 2))  # dropout
            scale = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
            for g in optimizer.param_groups:
                g["lr"] = g["base_lr"] * scale
            optimizer.zero_grad(set_to_none=True)
            loss_sum, n = _mlm_loss_sum(mlm, xin.to(dev), m.to(dev), t.to(dev), labels.to(dev))
            loss = loss_sum / max(n, 1)
            if not torch.isfinite(loss):
                raise EnsembleError(f"pretraining diverged at step {step + 1} (loss {float(loss)}); "
                                    "lower --lr or raise the warm-up")
            loss.backward()
            if max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(all_params, max_grad_norm)
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
            if step == steps or (checkpoint_every and step % checkpoint_every == 0):
                _write_checkpoint(out, mlm, pooler_sd, optimizer,
                                  state_now(step, prev_seconds + time.perf_counter() - t_train))
            progress.advance(1, loss=losses[-1])
    finally:
        progress.stop()
    seconds = time.perf_counter() - t_train
    total_seconds = prev_seconds + seconds

    ppl_after = None
    if eval_texts:
        ppl_after = perplexity(mlm, tokenizer, eval_texts, batch_size=64, mask_prob=mask_prob, max_length=max_len)
        progress.note(f"MLM perplexity after {steps} steps: {ppl_after:.2f} on {eval_desc} "
                      f"(before: {ppl_before:.2f}{'' if not include_eval_inputs else '; not held out: dev inputs were pretrained on'})")

    import transformers

    provenance: dict[str, Any] = {
        "format": 1,
        "producer": "ensemble pretrain",
        "base": base,
        "base_path": str(base_path),
        "tasks": list(tasks),
        "include_eval_inputs": bool(include_eval_inputs),
        "data": corpus.files,
        "sequences": {"total": n_seq, "per_file": corpus.counts},
        "steps": steps,
        "epochs": round(steps / per_epoch, 4),
        "seed": int(seed),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "layer_decay": float(layer_decay),
        "weight_decay": float(weight_decay),
        "warmup_steps": int(warmup_steps),
        "schedule": "linear warm-up then constant",
        "max_grad_norm": float(max_grad_norm),
        "max_length": int(max_len),
        "masking": {
            "mask_prob": float(mask_prob), "mask_token": MASK_TOKEN_FRAC, "random_token": RANDOM_TOKEN_FRAC,
            "unchanged": round(1 - MASK_TOKEN_FRAC - RANDOM_TOKEN_FRAC, 10),
            "never_masked": "special tokens and padding", "masks": "drawn per step from (seed, step)",
            "next_sentence_prediction": False, "pairs": "[CLS] a [SEP] b [SEP] with token type ids",
        },
        "head": head,
        "head_missing_keys": head_missing,
        "loss": {"first_50_mean": float(np.mean(losses[:50])) if losses else None,
                 "last_50_mean": float(np.mean(losses[-50:])) if losses else None},
        "perplexity": None if not eval_texts else {
            "texts": eval_desc, "files": eval_files, "held_out": not include_eval_inputs,
            "mask_seed": PERPLEXITY_SEED, "before": ppl_before, "after": ppl_after,
        },
        "resumed_from": resumed,
        "seconds": round(total_seconds, 3),
        "device": str(dev),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "base_provenance": base_provenance,
    }
    mlm.to("cpu")
    _export(out, mlm, tokenizer, pooler_sd, provenance)
    return PretrainResult(
        out=out, base=base, tasks=tuple(tasks), steps=steps, steps_run=steps - start_step,
        resumed_from=start_step if ckpt_dir is not None else None, head=head, head_missing_keys=list(head_missing),
        sequences=n_seq, epochs=steps / per_epoch, data=dict(corpus.files), losses=list(losses),
        perplexity_before=ppl_before, perplexity_after=ppl_after, perplexity_texts=eval_desc,
        perplexity_held_out=(not include_eval_inputs) if eval_texts else None,
        seconds=seconds, device=str(dev), provenance=provenance,
    )
