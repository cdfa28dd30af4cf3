"""ensemble.modeling.infer: batched predictions equal a plain unbatched forward, in input order."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ensemble.modeling.batches import budget_batches, encode
from ensemble.bench.accuracy import unbatched_predictions
from ensemble.modeling.infer import predict_encoded
from fixtures_bench import mixed_split, tiny_model  # noqa: F401
from fixtures_torch import tiny_base  # noqa: F401


@pytest.mark.parametrize("task", ["sst", "para", "sts"])
@pytest.mark.parametrize("max_tokens", [40, 200, 2048])
def test_predict_encoded_equals_unbatched_forward(tiny_model, task, max_tokens):
    model, tok = tiny_model
    enc = encode(tok, mixed_split(task, 60, seed=len(task)), 64)
    assert len(set(enc.lengths.tolist())) > 10                       # mixed lengths
    batches = budget_batches(enc, max_tokens)
    assert any(b.n_tokens < b.input_ids.numel() for b in batches) or max_tokens == 40  # some padding is exercised
    batched = predict_encoded(model, enc, torch.device("cpu"), "fp32", max_tokens)
    ref = unbatched_predictions(model, enc)
    assert batched.shape == ref.shape == (60, model.heads[task][-1].out_features)
    np.testing.assert_allclose(batched, ref, atol=1e-5, rtol=0)


def test_predict_encoded_keeps_input_order_and_train_mode(tiny_model):
    model, tok = tiny_model
    enc = encode(tok, mixed_split("sst", 30, seed=9), 64)
    model.train()
    try:
        full = predict_encoded(model, enc, torch.device("cpu"))
        assert model.training                                                 # mode restored
    finally:
        model.eval()
    # row i of the output is row i of the input, whatever the batching
    for i in (0, 7, 29):
        one = unbatched_predictions(model, enc, rows=[i])[0]
        np.testing.assert_allclose(full[i], one, atol=1e-5)
    assert predict_encoded(model, encode(tok, mixed_split("sst", 0), 64)).shape == (0, 5)
