"""Tables that never cut a number: every column's width is decided here, before rich lays it out.

Numeric columns are exactly as wide as their widest value (headers wrap at spaces above them);
text columns fold (never an ellipsis) down to a floor that still holds every number they carry;
when even the floors do not fit, the columns of least value are dropped first (``drop`` order),
and a table that still does not fit is printed wider than the terminal rather than cut.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

TEXT_FLOOR = 10   # a folded text column keeps at least this many characters a line
NUMBER = re.compile(r"[-+]?\d[\d,._]*(?:[eE][-+]?\d+)?[%sx]?")


@dataclass(frozen=True)
class Col:
    """A column: ``numeric`` ones are right-justified and never wrapped; ``drop`` > 0 marks one that
    may be left out on a narrow terminal (the highest ``drop`` goes first); text columns fold down
    to ``floor`` characters a line."""
    header: str
    numeric: bool = False
    drop: int = 0
    floor: int = TEXT_FLOOR   # a text column folds to no fewer characters a line than this (or its widest)


@dataclass
class Fitted:
    table: Table
    width: int           # the table's full width in characters
    dropped: list[str]   # headers of the columns left out


def cell_width(cell: str) -> int:
    return max((Text.from_markup(line).cell_len for line in cell.split("\n")), default=0)


def number_width(cell: str) -> int:
    """The longest number in a cell (which a folded column must hold whole)."""
    return max((len(m) for m in NUMBER.findall(Text.from_markup(cell).plain)), default=0)


def _natural(col: Col, cells: list[str]) -> tuple[int, int]:
    """(natural width, floor) of one column."""
    if col.numeric:
        w = max([cell_width(c) for c in cells] + [len(word) for word in col.header.split()] + [1])
        return w, w
    natural = max([cell_width(c) for c in cells] + [len(col.header), 1])
    return natural, max([min(natural, col.floor)] + [number_width(c) for c in cells])


def _overhead(n: int) -> int:
    return 3 * n + 1   # a border before each column and after the last, one space of padding each side


def _text_widths(naturals: list[int], floors: list[int], room: int) -> list[int]:
    """Shrink the widest text columns first (never below their floors) until they fit in ``room``."""
    cap = max(naturals, default=0)
    while cap > 0 and sum(max(f, min(n, cap)) for n, f in zip(naturals, floors)) > room:
        cap -= 1
    return [max(f, min(n, cap)) for n, f in zip(naturals, floors)]


def fit(title: str, cols: list[Col], rows: list[list[str]], width: int, keep_all: bool = False) -> Fitted:
    """A rich table of ``rows`` (markup strings, one per column) in at most ``width`` characters
    where the columns allow it; ``keep_all`` keeps every column however wide the table gets."""
    keep = list(range(len(cols)))
    sizes = [_natural(c, [r[i] for r in rows]) for i, c in enumerate(cols)]
    order = sorted((i for i, c in enumerate(cols) if c.drop), key=lambda i: (-cols[i].drop, -i))
    while not keep_all and order and sum(sizes[i][1] for i in keep) + _overhead(len(keep)) > width:
        keep.remove(order.pop(0))
    fixed = sum(sizes[i][0] for i in keep if cols[i].numeric)
    text = [i for i in keep if not cols[i].numeric]
    room = width - _overhead(len(keep)) - fixed
    widths = dict(zip(text, _text_widths([sizes[i][0] for i in text], [sizes[i][1] for i in text], room)))
    widths.update({i: sizes[i][0] for i in keep if cols[i].numeric})
    total = sum(widths.values()) + _overhead(len(keep))
    table = Table(title=Text(title), width=total if total > width else None)   # a title is plain text, never markup
    for i in keep:
        c = cols[i]
        header = Text(c.header, no_wrap=False, overflow="fold")
        # a numeric column is as wide as its widest value, so its overflow never applies
        table.add_column(header, justify="right" if c.numeric else "left", width=widths[i], no_wrap=c.numeric,
                         overflow="fold")
    for r in rows:
        table.add_row(*[r[i] for i in keep])
    return Fitted(table, total, [cols[i].header for i in range(len(cols)) if i not in keep])
