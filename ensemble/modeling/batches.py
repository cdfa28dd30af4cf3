"""Token batches: tokenise a split once with the encoder's fast tokenizer, then cut it into batches.

Pairs are one sequence ``[CLS] a [SEP] b [SEP]`` with token type ids, truncated to the model's
limit. Training batches group examples of similar length (shuffled within length buckets) and
randomise the pair order per example; inference batches are cut by a token budget from
length-sorted inputs. Every batch is padded to its own longest row only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..tasks import TASKS


def lengths_of(input_ids: Sequence[list[int]]) -> np.ndarray:
    """The length of each token sequence."""
    return np.fromiter((len(x) for x in input_ids), dtype=np.int64, count=len(input_ids))


@dataclass
class Encoded:
    """One split tokenised once; rows in the split's order."""
    task: str
    ids: list[str]
    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    labels: np.ndarray | None
    pad_id: int
    swapped_input_ids: list[list[int]] | None = None       # pairs as [CLS] b [SEP] a [SEP]
    swapped_token_type_ids: list[list[int]] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return lengths_of(self.input_ids)


@dataclass
class Batch:
    task: str
    rows: np.ndarray                 # positions of the rows in the Encoded split
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    labels: torch.Tensor | None

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device, non_blocking: bool = False) -> "Batch":
        def mv(t):
            return None if t is None else t.to(device, non_blocking=non_blocking)
        return Batch(self.task, self.rows, mv(self.input_ids), mv(self.attention_mask),
                     mv(self.token_type_ids), mv(self.labels))

    def pin_memory(self) -> "Batch":
        def pin(t):
            return None if t is None else t.pin_memory()
        return Batch(self.task, self.rows, pin(self.input_ids), pin(self.attention_mask),
                     pin(self.token_type_ids), pin(self.labels))




def max_length_for(tokenizer, encoder_config=None, requested: int | None = None) -> int:
    """The longest sequence the model accepts (position embeddings and tokenizer limit)."""
    limits = [requested] if requested else []
    tl = getattr(tokenizer, "model_max_length", None)
    if tl and tl < 1_000_000:
        limits.append(int(tl))
    mp = getattr(encoder_config, "max_position_embeddings", None) if encoder_config is not None else None
    if mp:
        limits.append(int(mp))
    return min(limits) if limits else 512


def texts_of(split) -> list[str | tuple[str, str]]:
    """The split's inputs: sentences, or ``(a, b)`` pairs for pair tasks."""
    if TASKS[split.task].pair:
        return [(e.text_a, e.text_b or "") for e in split.examples]
    return [e.text_a for e in split.examples]


def tokenize(tokenizer, texts: Sequence[str | tuple[str, str]], max_length: int) -> tuple[list, list]:
    """``(input_ids, token_type_ids)`` of sentences and ``(a, b)`` pairs (mixed), truncated to ``max_length``."""
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


def encode(tokenizer, split, max_length: int, both_orders: bool = False) -> Encoded:
    """Tokenise a :class:`ensemble.data.Split` (or anything with ``task``, ``examples``)."""
    task = TASKS[split.task]
    ex = split.examples
    texts = texts_of(split)
    input_ids, token_type_ids = tokenize(tokenizer, texts, max_length)
    swapped = None
    if task.pair and ex and both_orders:
        swapped = tokenize(tokenizer, [(b, a) for a, b in texts], max_length)
    labels = None
    if ex and ex[0].label is not None:
        dtype = np.float32 if task.kind == "regression" else np.int64
        labels = np.array([e.label for e in ex], dtype=dtype)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encoded(
        task=split.task, ids=[e.id for e in ex], input_ids=input_ids, token_type_ids=token_type_ids,
        labels=labels, pad_id=pad,
        swapped_input_ids=swapped[0] if swapped is not None else None,
        swapped_token_type_ids=swapped[1] if swapped is not None else None,
    )


def pad(input_ids: Sequence[list[int]], token_type_ids: Sequence[list[int]], pad_id: int):
    """``(input_ids, attention_mask, token_type_ids)`` tensors, rows padded to the longest."""
    width = max(len(s) for s in input_ids)
    n = len(input_ids)
    ids = np.full((n, width), pad_id, dtype=np.int64)
    tt = np.zeros((n, width), dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    for i, (s, t) in enumerate(zip(input_ids, token_type_ids)):
        ids[i, : len(s)] = s
        tt[i, : len(t)] = t
        mask[i, : len(s)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(tt)


def collate(enc: Encoded, rows: np.ndarray, swap: np.ndarray | None = None) -> Batch:
    """Pad the given rows to their longest; ``swap[i]`` takes row i in b-a order."""
    seqs, types = [], []
    for j, r in enumerate(rows):
        if swap is not None and swap[j] and enc.swapped_input_ids is not None:
            seqs.append(enc.swapped_input_ids[r])
            types.append(enc.swapped_token_type_ids[r])
        else:
            seqs.append(enc.input_ids[r])
            types.append(enc.token_type_ids[r])
    ids, mask, tt = pad(seqs, types, enc.pad_id)
    labels = None if enc.labels is None else torch.from_numpy(enc.labels[rows])
    return Batch(enc.task, np.asarray(rows), ids, mask, tt, labels)


def length_buckets(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, bucket: int = 50) -> list[np.ndarray]:
    """Row indices cut into batches of similar length: shuffle, sort within buckets of ``bucket``
    batches, cut, then shuffle the batches. Every row appears once, in ``ceil(n / batch_size)`` batches."""
    order = rng.permutation(len(lengths))
    span = batch_size * bucket
    batches = []
    for start in range(0, len(lengths), span):
        chunk = order[start:start + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        for b in range(0, len(chunk), batch_size):
            batches.append(chunk[b:b + batch_size])
    rng.shuffle(batches)
    return batches


def training_batches(enc: Encoded, batch_size: int, rng: np.random.Generator,
                     bucket: int = 50, randomise_order: bool = True) -> list[Batch]:
    """Shuffled batches of similar length (:func:`length_buckets`); pair order is drawn per example
    (b-a with probability 1/2)."""
    if len(enc) == 0:
        return []
    batches = length_buckets(enc.lengths, batch_size, rng, bucket)
    pair = TASKS[enc.task].pair and randomise_order and enc.swapped_input_ids is not None
    return [collate(enc, rows, rng.random(len(rows)) < 0.5 if pair else None) for rows in batches]


def budget_batches(enc: Encoded, max_tokens: int = 16384, max_rows: int = 512) -> list[Batch]:
    """Inference batches from length-sorted rows: each holds at most ``max_tokens`` padded tokens.

    Rows are taken longest first (memory peaks early). A batch is also closed where the length
    changes once it holds at least a quarter of the budget in real tokens, so the rows of a common
    length fill their own batches with no padding (and no attention mask), and only rare lengths
    share a batch with the next shorter ones (little padding, fewer tiny batches).
    """
    if len(enc) == 0:
        return []
    lengths = enc.lengths
    order = np.argsort(-lengths, kind="stable")
    min_fill = max_tokens // 4
    batches: list[np.ndarray] = []
    start = 0
    width = prev = int(lengths[order[0]])   # the batch's width is its first (longest) row's length
    real = 0                                # real tokens in the batch so far
    for i, r in enumerate(order):
        n = i - start
        length = int(lengths[r])
        if n and ((n + 1) * width > max_tokens or n >= max_rows or (length != prev and real >= min_fill)):
            batches.append(order[start:i])
            start, width, real = i, length, 0
        real += length
        prev = length
    batches.append(order[start:])
    return [collate(enc, rows) for rows in batches]
