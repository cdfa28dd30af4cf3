from __future__ import annotations

from ensemble.errors import SHOWN_CHARS, shown


def test_a_short_value_is_shown_whole():
    assert shown("abc") == "'abc'"


def test_a_long_value_is_cut_with_its_length():
    text = shown("x" * 10_000_000)
    assert text.startswith("'xxx") and text.endswith("... (10,000,002 characters)")
    assert len(text) < SHOWN_CHARS + 40
