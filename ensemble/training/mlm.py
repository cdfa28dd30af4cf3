"""The masked-language model: loading with its head, BERT masking, the loss, perplexity, and the
tasks' texts it is trained and measured on.

* Masking (BERT): each non-special, non-padding token is chosen with probability ``mask_prob``
  (15%); a chosen token becomes ``[MASK]`` with probability 0.8, a random non-special vocabulary
  token with probability 0.1, and stays unchanged with probability 0.1. The loss is cross
  entropy on the chosen tokens only. Special tokens (``[CLS]``, ``[SEP]``, ``[PAD]``,
  ``[UNK]``, ``[MASK]``) and padding are never chosen. If a batch would have no chosen token, its
  eligible token with the smallest draw is chosen (no empty loss).
* Head: the encoder's own MLM head (``AutoModelForMaskedLM``) when the base checkpoint holds its
  weights ("pretrained"), else a freshly initialised one ("fresh").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

from .. import data as data_mod
from ..modeling.batches import lengths_of, max_length_for, pad, texts_of, tokenize
from ..errors import EnsembleError
from ..modeling.infer import pick_device
from ..modeling.bases import check_base_dir, quiet_transformers, resolve_base
from ..progress import Progress

MASK_TOKEN_FRAC = 0.8
RANDOM_TOKEN_FRAC = 0.1
PERPLEXITY_SEED = 0


# -- masking ----------------------------------------------------------------------------------
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


def special_ids(tokenizer) -> list[int]:
    return sorted({int(i) for i in tokenizer.all_special_ids if i is not None})


def replacement_ids(tokenizer, vocab_size: int) -> torch.Tensor:
    """The ids a chosen token may be replaced with: every non-special vocabulary token."""
    special = set(special_ids(tokenizer))
    size = min(len(tokenizer), vocab_size)
    ids = torch.tensor([i for i in range(size) if i not in special], dtype=torch.long)
    if len(ids) == 0:
        raise EnsembleError("the tokenizer has no non-special tokens to draw random replacements from")
    return ids


def masking_provenance(mask_prob: float) -> dict[str, Any]:
    """How the masks are drawn, as the provenance file records it."""
    return {
        "mask_prob": float(mask_prob), "mask_token": MASK_TOKEN_FRAC, "random_token": RANDOM_TOKEN_FRAC,
        "unchanged": round(1 - MASK_TOKEN_FRAC - RANDOM_TOKEN_FRAC, 10),
        "never_masked": "special tokens and padding", "masks": "drawn per step from (seed, step)",
        "next_sentence_prediction": False, "pairs": "[CLS] a [SEP] b [SEP] with token type ids",
    }


class Masker:
    """The masking of one tokenizer and model: :func:`mask_tokens` with their special ids."""

    def __init__(self, tokenizer, vocab_size: int, mask_prob: float):
        self.special = special_ids(tokenizer)
        self.replacements = replacement_ids(tokenizer, vocab_size)
        self.mask_id = int(tokenizer.mask_token_id)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.mask_prob = mask_prob

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, generator: torch.Generator):
        return mask_tokens(input_ids, attention_mask, special_ids=self.special, mask_token_id=self.mask_id,
                           replacement_ids=self.replacements, generator=generator, mask_prob=self.mask_prob)


# -- loading ----------------------------------------------------------------------------------
def _hf_kwargs(base_path: str) -> dict[str, Any]:
    return {} if Path(base_path).exists() else {"local_files_only": True}


def _check_mlm(base: str, mlm, tokenizer, missing: list[str]) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise EnsembleError(f"--base {base}: a fast tokenizer (tokenizer.json) is required")
    if tokenizer.mask_token_id is None:
        raise EnsembleError(f"--base {base}: the tokenizer has no mask token; expected a BERT-style tokenizer")
    encoder = mlm.base_model
    if encoder is mlm or getattr(getattr(encoder, "encoder", None), "layer", None) is None \
            or getattr(encoder, "embeddings", None) is None:
        raise EnsembleError(
            f"--base {base}: {type(mlm).__name__} is not a BERT-family encoder with `embeddings` and "
            "`encoder.layer` modules"
        )
    enc_missing = [k for k in missing if k.startswith(mlm.base_model_prefix + ".")]
    if enc_missing:
        raise EnsembleError(
            f"--base {base}: the checkpoint lacks encoder weights (e.g. {enc_missing[:3]}); "
            "expected a pretrained encoder"
        )


def _base_pooler(base: str, base_path: str, mlm) -> dict[str, torch.Tensor]:
    """The base encoder's pooler (the MLM class has none, the fine-tuning code uses it), or {}."""
    if getattr(mlm.base_model, "pooler", None) is not None:
        return {}
    try:
        with quiet_transformers():
            plain, pinfo = AutoModel.from_pretrained(base_path, output_loading_info=True, use_safetensors=True,
                                                     dtype=torch.float32, **_hf_kwargs(base_path))
    except (OSError, ValueError, KeyError) as e:  # pragma: no cover - the MLM load succeeded
        raise EnsembleError(f"--base {base}: could not load the encoder ({e})") from e
    pooler = getattr(plain, "pooler", None)
    pooler_missing = [k for k in pinfo.get("missing_keys", []) if k.startswith("pooler.")]
    if pooler is None or pooler_missing:
        return {}
    prefix = mlm.base_model_prefix
    return {f"{prefix}.pooler.{k}": v.detach().clone() for k, v in pooler.state_dict().items()}


def load_mlm(base: str, base_path: str):
    """(MLM model, tokenizer, missing keys, pooler state dict of the base encoder or {})."""
    check_base_dir(base, base_path)
    kw = _hf_kwargs(base_path)
    try:
        with quiet_transformers():
            mlm, info = AutoModelForMaskedLM.from_pretrained(
                base_path, output_loading_info=True, attn_implementation="sdpa", use_safetensors=True,
                dtype=torch.float32, **kw)
            tokenizer = AutoTokenizer.from_pretrained(base_path, use_fast=True, **kw)
    except (OSError, ValueError, KeyError) as e:
        raise EnsembleError(
            f"--base {base}: could not load a masked-language model ({str(e).splitlines()[0] if str(e) else e!r}). "
            "Pass a local BERT-family model directory (config.json + model.safetensors + tokenizer), "
            "or --base minilm for the offline MiniLM stand-in"
        ) from e
    missing = sorted(info.get("missing_keys", []))
    _check_mlm(base, mlm, tokenizer, missing)
    return mlm, tokenizer, missing, _base_pooler(base, base_path, mlm)


def head_missing_keys(mlm, missing: list[str]) -> list[str]:
    """The missing keys outside the encoder: non-empty means a freshly initialised head."""
    return [k for k in missing if not k.startswith(mlm.base_model_prefix + ".")]


class MlmRoles:
    """The MLM model seen as :func:`ensemble.training.finetune.param_groups` sees a multitask model: embeddings,
    encoder layers (with their depth) and the rest (the head, at the base rate)."""

    def __init__(self, mlm):
        self.mlm = mlm
        self.n_layers = len(mlm.base_model.encoder.layer)

    def parameter_roles(self):
        encoder = self.mlm.base_model
        role: dict[int, tuple[str, int | None]] = {id(p): ("embeddings", None) for p in encoder.embeddings.parameters()}
        for i, layer in enumerate(encoder.encoder.layer):
            role.update({id(p): ("layer", i) for p in layer.parameters()})
        for name, p in self.mlm.named_parameters():  # tied parameters appear once
            if p.requires_grad:
                yield (name, p, *role.get(id(p), ("head", None)))


# -- the tasks' texts ------------------------------------------------------------------------
@dataclass
class Corpus:
    """The training sequences of the tasks' files, in file order."""
    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    files: dict[str, str]            # file name -> sha256
    counts: dict[str, int]           # file name -> sequences


def read_corpus(data_dir: Path, tasks: Sequence[str], include_eval_inputs: bool, tokenizer, max_len: int,
                progress: Progress) -> Corpus:
    """The tasks' training inputs (with ``include_eval_inputs`` also dev and test), tokenised."""
    corpus = Corpus([], [], {}, {})
    splits = ("train", "dev", "test") if include_eval_inputs else ("train",)
    for t in tasks:
        for s in splits:
            path = data_mod.input_path(data_dir, t, s)
            if s == "test" and not path.is_file():
                progress.note(f"{path.name}: not found; pretraining without the {t} test inputs")
                continue
            sp = data_mod.read_split(data_dir, t, s)
            a, b = tokenize(tokenizer, texts_of(sp), max_len)
            corpus.input_ids += a
            corpus.token_type_ids += b
            corpus.files[sp.path.name] = sp.sha256
            corpus.counts[sp.path.name] = len(a)
    if not corpus.input_ids:
        raise EnsembleError(f"{data_dir}: the {', '.join(tasks)} files hold no sentences to pretrain on")
    return corpus


@dataclass
class EvalTexts:
    """The held-out (unless ``include_eval_inputs``) dev texts perplexity is measured on."""
    texts: list = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    desc: str | None = None


def eval_texts(data_dir: Path, tasks: Sequence[str], limit: int) -> EvalTexts:
    """At most ``limit`` dev inputs per task (none for ``limit`` 0)."""
    ev = EvalTexts()
    if limit <= 0:
        return ev
    parts = []
    for t in tasks:
        sp = data_mod.read_split(data_dir, t, "dev")
        tx = texts_of(sp)[:limit]
        ev.texts += tx
        ev.files[sp.path.name] = sp.sha256
        parts.append(f"{t} dev ({len(tx)} of {len(sp)})")
    ev.desc = ", ".join(parts)
    return ev


# -- the loss ---------------------------------------------------------------------------------
def _head_module(mlm) -> nn.Module | None:
    """The MLM head taking hidden states (BERT ``cls``, RoBERTa ``lm_head``), else None."""
    for name in ("cls", "lm_head"):
        m = getattr(mlm, name, None)
        if isinstance(m, nn.Module):
            return m
    return None


def mlm_loss_sum(mlm, input_ids, attention_mask, token_type_ids, labels) -> tuple[torch.Tensor, int]:
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


# -- perplexity -------------------------------------------------------------------------------
def _mlm_of(model: str | Path | nn.Module, tokenizer, allow_fresh_head: bool):
    """(model, tokenizer) from a model or a model directory (see :func:`perplexity`)."""
    if not isinstance(model, (str, Path)):
        if tokenizer is None:
            raise EnsembleError("perplexity: a tokenizer is required with an in-memory model")
        return model, tokenizer
    mlm, tok, missing, _ = load_mlm(str(model), resolve_base(str(model)))
    head_missing = head_missing_keys(mlm, missing)
    if head_missing and not allow_fresh_head:
        raise EnsembleError(
            f"{model}: the checkpoint has no MLM head weights (missing {head_missing[:3]}); its "
            "perplexity would measure a random head. Pretrain it first (ensemble pretrain), or "
            "pass allow_fresh_head=True"
        )
    return mlm, tokenizer or tok


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
    mlm, tokenizer = _mlm_of(model, tokenizer, allow_fresh_head)
    if not texts:
        raise EnsembleError("perplexity: no texts to measure")
    dev = pick_device(device) if device is not None else next(mlm.parameters()).device
    was_training = mlm.training
    mlm.to(dev).eval()
    ids, types = tokenize(tokenizer, list(texts), max_length_for(tokenizer, mlm.config, max_length))
    order = np.argsort(lengths_of(ids), kind="stable")
    gen = torch.Generator().manual_seed(int(seed))
    masker = Masker(tokenizer, mlm.config.vocab_size, mask_prob)
    total, count = 0.0, 0
    try:
        for s in range(0, len(order), batch_size):
            rows = order[s:s + batch_size]
            x, m, t = pad([ids[r] for r in rows], [types[r] for r in rows], masker.pad_id)
            xin, labels = masker(x, m, gen)
            loss, n = mlm_loss_sum(mlm, xin.to(dev), m.to(dev), t.to(dev), labels.to(dev))
            total += float(loss)
            count += n
    finally:
        mlm.train(was_training)
    if count == 0:
        raise EnsembleError("perplexity: the texts hold no maskable tokens")
    return math.exp(total / count)

