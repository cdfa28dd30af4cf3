"""Every command's help, rendered as a terminal of 80 (and 60) columns shows it: each help text
exactly as the source says it (no markup swallowed), no line wider than the terminal, nothing cut
inside a word, no Python type leaked."""
from __future__ import annotations

import inspect
import re

import pytest
import typer
from typer.testing import CliRunner

from ensemble.cli import app

ROOT = typer.main.get_command(app)


def _all(group, path=()):
    yield path, group
    for name, cmd in getattr(group, "commands", {}).items():
        yield from _all(cmd, (*path, name))


COMMANDS = dict(_all(ROOT))


def _help(path, columns: int) -> str:
    r = CliRunner().invoke(app, [*path, "-h"], terminal_width=columns - 2)   # click's help leaves 2 columns
    assert r.exit_code == 0, r.output
    return r.output


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda p: " ".join(p) or "ensemble")
@pytest.mark.parametrize("columns", [80, 60])
def test_help_shows_every_text_as_written_within_the_width(path, columns):
    cmd = COMMANDS[path]
    out = _help(path, columns)
    flat = _flat(out)
    texts = [inspect.cleandoc(cmd.help or "")] + [p.help for p in cmd.params if getattr(p, "help", None)]
    for text in texts:
        for paragraph in text.split("\n\n"):
            assert _flat(paragraph) in flat, paragraph
    words = set(flat.split())
    for line in out.splitlines():
        if len(line) > columns:   # only a single word longer than the room may stick out
            assert len(line.split()[-1]) > columns // 3, line
    for name in (o for p in cmd.params for o in p.opts if o.startswith("--")):
        assert any(w.startswith(name) for w in words), f"{name} cut"
    assert "<bool>" not in out and "{" not in out.split("\n")[0] and not re.search(r"<\w+\[", out)
    assert "…" not in out


def test_markup_in_help_prints_as_written():
    out = _flat(_help(("run",), 80))
    assert "Grid file (TOML: [defaults], [grid] lists, [[runs]]) of what to train" in out
    assert 'pip install -e ".[ray]"' in out


def test_choice_lists_fold_at_a_bar_and_options_stay_whole():
    out = _help(("train",), 80)
    assert "--gradient-checkpointing" in out
    assert re.search(r"^ *--mode <greedy\|greedy-strict\|caruana\|bagged>$", _help(("select",), 40), re.M) is None
    for line in _help(("select",), 40).splitlines():   # at 40 columns the list folds after a bar
        assert not re.search(r"[a-z]$", line) or "|" not in line or line.rstrip().endswith(">"), line
    assert "bert-base-uncased]" in out


def test_the_top_description_names_no_mode_and_arguments_are_named_in_capitals():
    top = _flat(_help((), 80))
    assert "greedy" not in top.split("Options:")[0] and "per-task ensembles" in top
    remove = _help(("remove",), 80)
    assert "remove [OPTIONS] CANDIDATES..." in remove and "{candidates}" not in remove
    assert re.search(r"CANDIDATES\.\.\. +Candidate ids", remove)
    assert "<list[" not in _help(("list",), 80) and "--where <str>" in _help(("list",), 80)
