"""The table fitter: numeric columns keep their widest value, text folds to its floor, low-value
columns drop first, and a table that cannot fit is printed wide rather than cut."""
from __future__ import annotations

import io

from rich.console import Console

from ensemble.cli.tables import Col, fit


def rendered(fitted, width: int) -> str:
    out = io.StringIO()
    Console(file=out, width=width).print(fitted.table, crop=False)
    return out.getvalue()


COLS = [Col("name"), Col("score", True), Col("note", drop=1), Col("big", True, drop=2)]
ROWS = [["a-rather-long-candidate-name-e1", "0.123456789", "a note with 3.14159 inside", "1,234,567,890"]]


def test_narrow_drops_low_value_columns_first_and_keeps_numbers_whole():
    f = fit("t", COLS, ROWS, 45)
    text = rendered(f, 45)
    assert f.dropped == ["big"] and f.width <= 45
    assert "0.123456789" in text and "3.14159" in text and "…" not in text
    assert "a-rather-l" in text   # the name folds, never an ellipsis
    assert fit("t", COLS, ROWS, 30).dropped == ["note", "big"]


def test_keep_all_and_too_narrow_print_wider_than_asked():
    f = fit("t", COLS, ROWS, 20, keep_all=True)
    assert f.dropped == [] and f.width > 20
    text = rendered(f, 20)
    assert "1,234,567,890" in text and "0.123456789" in text and "…" not in text


def test_headers_wrap_above_numbers():
    f = fit("t", [Col("mean held-out est.", True)], [["0.5"]], 80)
    assert f.width == len("held-out") + 4
