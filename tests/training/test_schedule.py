"""The learning-rate schedules' multipliers at known steps, worked out by hand (10 steps, 2 of them
warm-up: ``ceil(0.2 * 10)``; slanted: cut = floor(10 * 0.2) = 2, ratio 32)."""
from __future__ import annotations

import math

import pytest

from ensemble.errors import EnsembleError
from ensemble.training.schedule import multiplier, warmup_steps
from ensemble.training.config import TrainConfig

BY_HAND = {
    # step:          0      1       2    4                          6      9
    "constant": {0: 0.0, 1: 0.5, 2: 1.0, 4: 1.0, 6: 1.0, 9: 1.0},
    "linear": {0: 0.0, 1: 0.5, 2: 1.0, 4: 6 / 8, 6: 4 / 8, 9: 1 / 8},
    "cosine": {0: 0.0, 1: 0.5, 2: 1.0, 4: (1 + math.cos(math.pi / 4)) / 2, 6: 0.5,
               9: (1 + math.cos(7 * math.pi / 8)) / 2},
    # p = s / 2 rising, then 1 - (s - 2) / 8; multiplier (1 + 31 p) / 32
    "slanted": {0: 1 / 32, 1: 16.5 / 32, 2: 1.0, 4: (1 + 31 * 0.75) / 32, 6: 16.5 / 32, 9: 4.875 / 32},
}


@pytest.mark.parametrize("schedule", sorted(BY_HAND))
def test_multipliers_at_known_steps(schedule):
    for step, want in BY_HAND[schedule].items():
        assert multiplier(schedule, step, 10, 0.2) == pytest.approx(want, rel=1e-12, abs=1e-15), (schedule, step)


def test_no_warmup_constant_is_the_reports_rate_throughout():
    assert [multiplier("constant", s, 7) for s in range(7)] == [1.0] * 7
    assert warmup_steps(10, 0.0) == 0 and warmup_steps(10, 0.25) == 3   # rounded up to whole steps
    assert multiplier("linear", 0, 4) == 1.0 and multiplier("linear", 3, 4) == 0.25


def test_cosine_values_in_decimals():
    assert multiplier("cosine", 4, 10, 0.2) == pytest.approx(0.8535533905932737, rel=1e-12)
    assert multiplier("cosine", 9, 10, 0.2) == pytest.approx(0.038060233744356624, rel=1e-12)


@pytest.mark.parametrize("kw, message", [
    ({"schedule": "step"}, "--schedule: expected one of constant, linear, cosine, slanted"),
    ({"warmup": 1.0}, "--warmup must be a fraction"),
    ({"schedule": "slanted"}, "--schedule slanted needs --warmup > 0"),
    ({"grad_accum": 0}, "--grad-accum must be >= 1"),
    ({"max_grad_norm": -1.0}, "--max-grad-norm must be >= 0"),
    ({"patience": -1}, "--patience must be >= 0"),
])
def test_new_options_are_checked_with_the_option_named(kw, message):
    with pytest.raises(EnsembleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**kw)


def test_fingerprints_of_existing_configurations_do_not_change():
    """Values computed with the code before these options existed (main at 6d4db6e)."""
    assert TrainConfig(seed=1).fingerprint({"x": "1"}) == "73074837c39def99"
    quick = TrainConfig(base="minilm", architecture="cerberus", task_layers=2, smart_weight=10.0, lr=1e-4, limit=400,
                        max_length=128)
    assert quick.fingerprint({"a.csv": "ff"}) == "95372c0fed1e4954"
    seen = {quick.fingerprint({"a.csv": "ff"})}
    for kw in ({"schedule": "linear"}, {"warmup": 0.1}, {"grad_accum": 2}, {"max_grad_norm": 1.0},
               {"gradient_checkpointing": True}, {"patience": 2}):
        changed = TrainConfig(**{**quick.to_dict(), **kw}).fingerprint({"a.csv": "ff"})
        assert changed not in seen, kw     # away from its default, an option counts
        seen.add(changed)
