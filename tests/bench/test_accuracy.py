"""ensemble.bench.accuracy: the unbatched reference, label agreement and the probe heads check
what they claim."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ensemble.modeling.bases import load_base
from ensemble.modeling.batches import encode
from ensemble.bench.accuracy import fit_probe_head, label_agreement, predicted_labels, unbatched_predictions
from ensemble.modeling.infer import predict_encoded
from ensemble.modeling.model import ModelConfig, MultitaskModel
from fixtures_bench import mixed_split, tiny_model  # noqa: F401
from fixtures_torch import tiny_base  # noqa: F401


def test_unbatched_reference_is_really_one_at_a_time(tiny_model):
    """The reference runs each row alone with no padding: it matches a hand-made single forward."""
    model, tok = tiny_model
    enc = encode(tok, mixed_split("sst", 5), 64)
    ref = unbatched_predictions(model, enc, rows=[3])
    ids = torch.tensor([enc.input_ids[3]])
    with torch.no_grad():
        y = torch.softmax(model("sst", ids, torch.ones_like(ids), torch.tensor([enc.token_type_ids[3]])), -1)
    np.testing.assert_allclose(ref[0], y[0].double().numpy(), atol=1e-7)


def test_label_agreement_and_labels():
    a = np.array([[0.1, 0.9, 0, 0, 0], [0.6, 0.4, 0, 0, 0], [0, 0, 0, 0.2, 0.8]])
    b = np.array([[0.2, 0.8, 0, 0, 0], [0.4, 0.6, 0, 0, 0], [0, 0, 0, 0.1, 0.9]])
    assert predicted_labels("sst", a).tolist() == [1, 0, 4]
    assert label_agreement("sst", a, b) == pytest.approx(2 / 3)
    assert label_agreement("sst", a, a) == 1.0
    p = np.array([[0.2], [0.7], [0.51]])
    q = np.array([[0.3], [0.4], [0.9]])
    assert label_agreement("para", p, q) == pytest.approx(2 / 3)
    with pytest.raises(Exception):
        label_agreement("sts", p, q)


def test_fit_probe_head_fits_the_head(tiny_base):
    base, tok = load_base(str(tiny_base), 0.1)
    model = MultitaskModel.from_base(ModelConfig("multi", ("sst",)), base).eval()
    before = model.heads["sst"][-1].weight.detach().clone()
    split = mixed_split("sst", 80, seed=3)
    enc = encode(tok, split, 64)
    acc = fit_probe_head(model, enc, torch.device("cpu"))
    assert not torch.equal(before, model.heads["sst"][-1].weight)
    # the accuracy it reports is the fitted head's, through the model's own forward
    p = predict_encoded(model, enc, torch.device("cpu"))
    assert np.mean(p.argmax(1) == enc.labels) == pytest.approx(acc, abs=1e-9)
    # and the fit lowered the cross entropy below the uniform head's log(5)
    assert -np.mean(np.log(p[np.arange(len(p)), enc.labels])) < np.log(5)
