"""figures: every figure is a PNG that decodes to a real picture (not blank), drawn without a display."""
from __future__ import annotations

import io

import matplotlib
import matplotlib.image
import numpy as np
import pytest

from ensemble.report import figures
from ensemble.report.page import png_size

CURVE = {"steps": [{"step": 1, "candidate": "a", "score": 0.50, "accepted": True},
                   {"step": 2, "candidate": "b", "score": 0.55, "accepted": True},
                   {"step": 3, "candidate": "c", "score": 0.54, "accepted": False}],
         "mode": "greedy", "metric": "accuracy", "best_single": 0.5, "in_sample": 0.55,
         "heldout": {"estimate": 0.52, "low": 0.49, "high": 0.56, "level": 0.95, "members": 2}}
RUNS = [{"name": "multi", "epochs": {"sst": [(1, 0.4), (2, 0.5)], "sts": [(1, 0.7), (2, 0.8)]},
         "kept": {"sst": [(2, 0.5)], "sts": [(2, 0.8)]}},
        {"name": "sst only", "epochs": {"sst": [(1, 0.45)]}, "kept": {"sst": []}}]


def decoded(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(io.BytesIO(data), format="png")
    assert img.shape[:2] == png_size(data)[::-1]
    return img


def colours(img: np.ndarray) -> int:
    return len(np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0))


def test_the_backend_is_agg():
    assert matplotlib.get_backend().lower() == "agg"


@pytest.mark.parametrize("draw", [
    lambda: figures.selection_curve("sst", CURVE),
    lambda: figures.selection_curve("sts", {**CURVE, "heldout": None, "metric": "pearson"}),
    lambda: figures.learning_curves(RUNS, ["sst", "sts"]),
    lambda: figures.hyperparameter("lr", {"sst": [(1e-5, 0.5, "a"), (3e-5, 0.4, "b")]}, categorical=False),
    lambda: figures.hyperparameter("architecture", {"sst": [("multi", 0.5, "a"), ("cerberus-2", 0.4, "b")],
                                                    "sts": [("multi", 0.8, "a")]}, categorical=True),
    lambda: figures.confusion("sst", np.eye(5, dtype=int).tolist(), np.ones((5, 5), dtype=int).tolist()),
    lambda: figures.correlation("para", [[1.0, 0.3], [0.3, 1.0]], ["m1", "m2"]),
], ids=["selection", "selection-no-heldout", "learning", "lr", "architecture", "confusion", "correlation"])
def test_each_figure_is_a_picture(draw):
    img = decoded(draw())
    assert img.shape[0] > 200 and img.shape[1] > 200
    assert colours(img) > 50           # text, axes, marks: far from a blank canvas


def test_figures_close_what_they_draw():
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    figures.confusion("para", [[3, 1], [1, 2]], [[2, 2], [0, 3]])
    assert len(plt.get_fignums()) == before


def test_the_same_data_gives_the_same_bytes():
    assert figures.selection_curve("sst", CURVE) == figures.selection_curve("sst", CURVE)
