"""The one weighted average and the metric on it."""
from __future__ import annotations

import numpy as np
import pytest
from selection_cases import col

from ensemble.errors import EnsembleError
from ensemble.selection import ensemble_predictions, score_on


def test_ensemble_predictions_and_score_on():
    p = {"a": col(1.0, 0.0), "b": col(0.25, 0.75)}
    assert np.array_equal(ensemble_predictions(p, {"a": 2, "b": 1}), col(0.75, 0.25))
    assert ensemble_predictions(p, {"a": 1}).dtype == np.float64
    assert score_on("para", p, [1, 0], {"a": 2, "b": 1}) == 1.0
    assert score_on("para", p, [1, 0], {"b": 1}) == 0.0
    with pytest.raises(EnsembleError, match="'c'"):
        ensemble_predictions(p, {"c": 1})
    with pytest.raises(EnsembleError, match="'c'"):
        score_on("para", p, [1, 0], {"a": 1, "c": 1})


def test_float_weights_average_as_floats_and_integers_stay_integers():
    p = {"a": col(1.0, 0.0), "b": col(0.25, 0.75)}
    assert np.array_equal(ensemble_predictions(p, {"a": 0.25, "b": 0.75}), (0.25 * p["a"] + 0.75 * p["b"]) / 1.0)
    assert score_on("para", p, [1, 0], {"a": 0.75, "b": 0.25}) == 1.0
    # integer weights: the integer sum, bit for bit as before
    assert np.array_equal(ensemble_predictions(p, {"a": 1, "b": 2}), (p["a"] + 2 * p["b"]) / 3)
    for bad in (-0.5, float("nan"), float("inf"), True, "1"):
        with pytest.raises(EnsembleError, match="non-negative finite number"):
            ensemble_predictions(p, {"a": bad})
