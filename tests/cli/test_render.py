"""Rendering: the error line is red and escapes rich markup; numbers and sizes print as the tables show them."""
from __future__ import annotations

import io

from rich.console import Console

from ensemble.cli import render


def test_error_is_bold_red_and_shows_brackets_literally(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(render, "err", Console(file=out, force_terminal=True, color_system="standard", width=200))
    render.error("bad [bold]value[/]")
    text = out.getvalue()
    assert "\x1b[1;31merror:" in text and "\x1b[31mbad [bold]value[/]" in text


def test_fmt_and_params():
    assert render.fmt(None) == "-" and render.fmt(0.123456) == "0.1235" and render.fmt(0.5, 3) == "0.500"
    assert render.fmt(3) == "3"
    assert render.params(None) == "-" and render.params(12345) == "12,345" and render.params(110_000_000) == "110.0M"
