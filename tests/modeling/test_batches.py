"""Token batches: one sequence per pair with token types, length-bucketed training batches, pair
order randomised in training only, token-budget inference batches, padding."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ensemble.modeling.batches import budget_batches, collate, encode, length_buckets, tokenize, training_batches
from ensemble.data import Example, read_split
from ensemble.modeling.bases import load_base
from fixtures_torch import sample_data, tiny_base, torch_one_thread  # noqa: F401


# -- token batches -------------------------------------------------------------------------------
def split_of(task, pairs, labels=None):
    ex = [Example(f"id{i}", a, b, None if labels is None else labels[i]) for i, (a, b) in enumerate(pairs)]
    return SimpleNamespace(task=task, examples=ex)


def test_pairs_are_one_sequence_with_token_types(tiny_base):
    tok = load_base(str(tiny_base), 0.1)[1]
    enc = encode(tok, split_of("para", [("how old are you ?", "who is the man ?")], [1]), 64, both_orders=True)
    toks = tok.convert_ids_to_tokens(enc.input_ids[0])
    assert toks == ["[CLS]", "how", "old", "are", "you", "?", "[SEP]", "who", "is", "the", "man", "?", "[SEP]"]
    assert enc.token_type_ids[0] == [0] * 7 + [1] * 6
    swapped = tok.convert_ids_to_tokens(enc.swapped_input_ids[0])
    assert swapped == ["[CLS]", "who", "is", "the", "man", "?", "[SEP]", "how", "old", "are", "you", "?", "[SEP]"]
    assert enc.swapped_token_type_ids[0] == [0] * 7 + [1] * 6
    single = encode(tok, split_of("sst", [("the film is good .", None)], [3]), 64)
    assert tok.convert_ids_to_tokens(single.input_ids[0]) == ["[CLS]", "the", "film", "is", "good", ".", "[SEP]"]
    assert single.token_type_ids[0] == [0] * 7 and single.labels.tolist() == [3]
    # truncation to the model's limit
    long = encode(tok, split_of("para", [("the " * 80, "a " * 80)], [0]), 16)
    assert len(long.input_ids[0]) == 16 and tok.convert_ids_to_tokens(long.input_ids[0])[-1] == "[SEP]"


def varied_pairs(n, seed=0):
    rng = np.random.default_rng(seed)
    words = ["the", "dog", "cat", "is", "playing", "man", "good", "bad", "city", "news"]
    out = []
    for i in range(n):
        a = " ".join(rng.choice(words, int(rng.integers(1, 20))))
        b = " ".join(rng.choice(words, int(rng.integers(1, 6))))   # b shorter: swapping changes the ids
        out.append((a, b))
    return out


def batch_rows(batches):
    return np.concatenate([b.rows for b in batches])


def test_training_batches_group_lengths_and_pad_per_batch(tiny_base):
    tok = load_base(str(tiny_base), 0.1)[1]
    n = 97
    enc = encode(tok, split_of("sts", varied_pairs(n), list(np.linspace(0, 5, n))), 64, both_orders=True)
    lengths = enc.lengths
    batches = training_batches(enc, 8, np.random.default_rng(0))
    assert sorted(batch_rows(batches).tolist()) == list(range(n))          # every row exactly once
    assert [len(b.rows) for b in batches].count(8) == n // 8
    for b in batches:
        longest = int(lengths[b.rows].max())
        assert b.input_ids.shape[1] == longest                              # padded to its own longest row
        assert b.attention_mask.sum(1).tolist() == lengths[b.rows].tolist()
        assert torch.equal(b.labels, torch.from_numpy(enc.labels[b.rows]))
        assert (b.input_ids[b.attention_mask == 0] == enc.pad_id).all()
    # one bucket holds every row here, so batches are consecutive runs of the length order:
    # their length ranges do not overlap
    ranges = sorted((int(lengths[b.rows].min()), int(lengths[b.rows].max())) for b in batches)
    for (lo1, hi1), (lo2, hi2) in zip(ranges, ranges[1:]):
        assert hi1 <= lo2
    # ...and the batch order is shuffled, not sorted by length
    widths = [b.input_ids.shape[1] for b in batches]
    assert widths != sorted(widths) and widths != sorted(widths, reverse=True)


def row_orders(enc, batches):
    """For each (row, a-b or b-a) seen in the batches."""
    seen = []
    for b in batches:
        for j, r in enumerate(b.rows):
            ids = b.input_ids[j][b.attention_mask[j] == 1].tolist()
            tt = b.token_type_ids[j][b.attention_mask[j] == 1].tolist()
            if ids == enc.input_ids[r] and tt == enc.token_type_ids[r]:
                seen.append((int(r), "ab"))
            elif enc.swapped_input_ids is not None and ids == enc.swapped_input_ids[r] \
                    and tt == enc.swapped_token_type_ids[r]:
                seen.append((int(r), "ba"))
            else:
                raise AssertionError(f"row {r} matches neither order")
    return seen


def test_pair_order_randomised_in_training_only(tiny_base):
    tok = load_base(str(tiny_base), 0.1)[1]
    n = 64
    split = split_of("para", varied_pairs(n, 1), [i % 2 for i in range(n)])
    enc = encode(tok, split, 64, both_orders=True)
    assert all(enc.input_ids[i] != enc.swapped_input_ids[i] for i in range(n))
    seen = row_orders(enc, training_batches(enc, 8, np.random.default_rng(7)))
    swapped = sum(o == "ba" for _, o in seen)
    assert 10 <= swapped <= n - 10                                         # about half, both orders present
    again = row_orders(enc, training_batches(enc, 8, np.random.default_rng(7)))
    assert again == seen                                                   # fixed seed: same draw
    assert all(o == "ab" for _, o in row_orders(enc, training_batches(enc, 8, np.random.default_rng(7),
                                                                      randomise_order=False)))
    # single sentences never swap, and inference never swaps
    for b in budget_batches(enc, max_tokens=200):
        for j, r in enumerate(b.rows):
            assert b.input_ids[j][b.attention_mask[j] == 1].tolist() == enc.input_ids[r]
    plain = encode(tok, split, 64)                                         # what inference encodes
    assert plain.swapped_input_ids is None
    assert all(o == "ab" for _, o in row_orders(plain, training_batches(plain, 8, np.random.default_rng(7))))


@pytest.mark.parametrize("max_tokens,max_rows", [(64, 512), (100, 512), (1000, 4), (16384, 512)])
def test_budget_batches_respect_max_tokens(tiny_base, max_tokens, max_rows):
    tok = load_base(str(tiny_base), 0.1)[1]
    n = 50
    enc = encode(tok, split_of("para", varied_pairs(n, 2)), 64)
    lengths = enc.lengths
    batches = budget_batches(enc, max_tokens=max_tokens, max_rows=max_rows)
    assert sorted(batch_rows(batches).tolist()) == list(range(n))
    for b in batches:
        rows, width = b.input_ids.shape
        assert width == int(lengths[b.rows].max())
        assert rows <= max_rows
        assert rows * width <= max_tokens or rows == 1
        assert b.labels is None
    if max_tokens == 16384 and max_rows == 512:
        assert len(batches) == 1
    if max_tokens == 64:
        assert len(batches) > 5


def test_collate_on_sample_data(tiny_base, sample_data):
    tok = load_base(str(tiny_base), 0.1)[1]
    split = read_split(sample_data, "sts", "dev")
    enc = encode(tok, split, 64)
    b = collate(enc, np.array([3, 0, 5]))
    assert b.rows.tolist() == [3, 0, 5]
    assert b.labels.dtype == torch.float32
    np.testing.assert_allclose(b.labels.numpy(), split.labels[[3, 0, 5]], rtol=1e-6)
    assert b.n_tokens == int(enc.lengths[[3, 0, 5]].sum())


def test_tokenize_mixes_sentences_and_pairs_in_order(tiny_base):
    tok = load_base(str(tiny_base), 0.1)[1]
    texts = ["the film is good .", ("how old are you ?", "who is the man ?"), "bad ."]
    ids, types = tokenize(tok, texts, 64)
    single = encode(tok, split_of("sst", [(texts[0], None), (texts[2], None)]), 64)
    pair = encode(tok, split_of("para", [texts[1]]), 64)
    assert ids == [single.input_ids[0], pair.input_ids[0], single.input_ids[1]]
    assert types == [single.token_type_ids[0], pair.token_type_ids[0], single.token_type_ids[1]]
    assert tokenize(tok, [], 64) == ([], [])


def test_length_buckets_cover_every_row_once():
    lengths = np.random.default_rng(0).integers(3, 60, size=103)
    b = length_buckets(lengths, 8, np.random.default_rng(1), bucket=2)
    assert len(b) == 13 and sorted(np.concatenate(b).tolist()) == list(range(103))
    assert all(np.all(np.diff(lengths[x]) >= 0) for x in b)   # sorted within a batch
