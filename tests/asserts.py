"""Assertion helpers shared by the tests (import by name: ``from asserts import raises``)."""
from __future__ import annotations

import pytest

from ensemble.errors import EnsembleError


def raises(parts: list[str], fn, *args, **kwargs) -> str:
    """Call ``fn``; assert it raises EnsembleError whose message holds every one of ``parts``."""
    with pytest.raises(EnsembleError) as ei:
        fn(*args, **kwargs)
    msg = str(ei.value)
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"
    return msg
