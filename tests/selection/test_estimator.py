"""EnsembleSelector: fit, then read ``*_``; predict and score with the one average."""
from __future__ import annotations

import numpy as np
import pytest
from selection_cases import PARA, PARA_Y

from ensemble.errors import EnsembleError
from ensemble.selection import EnsembleSelector


def test_selector_estimator_api():
    est = EnsembleSelector("para", "greedy")
    with pytest.raises(EnsembleError, match="not fitted"):
        est.predict(PARA)
    est.fit(PARA, PARA_Y)
    assert est.members_ == ["A", "D", "B"] and est.best_single_ == "A" and est.score_ == 1.0
    assert est.candidates_ == ["A", "B", "C", "D"]
    assert est.score(PARA, PARA_Y) == 1.0
    assert np.array_equal(est.predict(PARA), (PARA["A"] + PARA["D"] + PARA["B"]) / 3)
