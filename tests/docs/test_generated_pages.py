"""The generated pages (docs/reference/cli.md, docs/design/architecture.md) are what
``scripts/gen_docs.py`` makes of the code now, and the generator itself is deterministic and
catches a stale page."""
from __future__ import annotations

import shutil
from enum import Enum
from typing import Annotated, Optional

import typer

from docs_helpers import ROOT, load_generator
from ensemble.cli import app

gen = load_generator()
Kind = Enum("Kind", {"a|b": "a|b", "c": "c"}, type=str)   # a choice holding a pipe, for the toy app below


def test_the_generated_pages_are_not_stale():
    problems = gen.stale()
    assert not problems, "\n".join(problems)


def test_a_stale_or_missing_page_is_named_with_the_command_that_fixes_it(tmp_path):
    for path in gen.PAGES:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    assert gen.stale(tmp_path) == []
    cli = tmp_path / gen.CLI_PAGE
    cli.write_text(cli.read_text().replace("| `--lr` |", "| `--learning-rate` |"))
    (tmp_path / gen.ARCHITECTURE_PAGE).unlink()
    assert gen.stale(tmp_path) == [
        "docs/reference/cli.md is stale (the code changed since it was generated): run `python scripts/gen_docs.py`",
        "docs/design/architecture.md is missing: run `python scripts/gen_docs.py`"]


def test_check_exits_1_naming_the_stale_page(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    assert gen.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "docs/reference/cli.md is missing: run `python scripts/gen_docs.py`" in err


def test_the_pages_do_not_depend_on_the_terminal_or_the_machine(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    narrow = gen.render()
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("TERM", "dumb")
    assert gen.render() == narrow
    for text in narrow.values():
        assert str(ROOT) not in text and "/work/" not in text and "/home/" not in text


def _commands(group, path):
    ctx = gen._click_api().Context(group, info_name=path[-1])
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        if hasattr(sub, "list_commands"):
            yield from _commands(sub, [*path, name])
        else:
            yield [*path, name], sub


def test_every_command_and_option_is_in_the_reference():
    page = (ROOT / gen.CLI_PAGE).read_text()
    commands = list(_commands(typer.main.get_command(app), ["ensemble"]))
    assert [p for p, _ in commands if p[1] == "bench"] and [p for p, _ in commands if p[1] == "ensembles"]
    for path, command in commands:
        section = page.split(f"\n## {' '.join(path)}\n" if len(path) == 2 else f"\n### {' '.join(path)}\n")
        assert len(section) == 2, f"no section for {' '.join(path)}"
        body = section[1].split("\n## ")[0].split("\n### ")[0]
        assert f"```text\n{' '.join(path)} [OPTIONS]" in body
        for param in command.params:
            if param.param_type_name == "option" and not param.hidden:
                assert f"`{param.opts[0]}`" in body, f"{' '.join(path)}: {param.opts[0]} missing"


def test_choices_are_escaped_for_a_table_and_panels_are_kept():
    from ensemble.modeling.config import ARCHITECTURES
    page = (ROOT / gen.CLI_PAGE).read_text()
    train = page.split("\n## ensemble train\n")[1].split("\n## ")[0]
    row = next(line for line in train.splitlines() if line.startswith("| `--architecture`"))
    assert "multi+triple" in ARCHITECTURES
    assert " \\| ".join(f"`{a}`" for a in ARCHITECTURES) + " | `multi` |" in row
    assert row.count("|") - row.count("\\|") == 5            # four cells, whatever the choices hold
    command = typer.main.get_command(app).get_command(None, "train")
    panels = list(dict.fromkeys(gen._panel(p) or "Options" for p in command.params if not p.hidden))
    assert len(panels) >= 4 and "SMART" in panels
    assert [f"**{p}**" for p in panels] == [line for line in train.splitlines() if line.startswith("**")]


def test_help_text_is_escaped_outside_code_spans():
    assert gen.md_text("files <task>-<split>.csv, a|b, `x|y`, *not bold*", table=True) == \
        "files &lt;task&gt;-&lt;split&gt;.csv, a\\|b, `x\\|y`, \\*not bold\\*"
    assert gen.md_text("line one\nline two", table=True) == "line one line two"


def test_the_architecture_page_states_the_test_s_lists():
    page = (ROOT / gen.ARCHITECTURE_PAGE).read_text()
    test = (ROOT / "tests" / "test_architecture.py").read_text()
    consts = gen._assignments(ROOT / "tests" / "test_architecture.py")
    never, _ = consts["NEVER_TORCH"]
    lazy, _ = consts["LOAD_WITHOUT_TORCH"]
    assert "NEVER_TORCH = (" in test and len(never) > 5 and lazy[:len(never)] == never
    line = next(l for l in page.splitlines() if "`NEVER_TORCH`" in l and "import no" in l)
    assert line.endswith(", ".join(f"`{m}`" for m in never) + ".")
    line = next(l for l in page.splitlines() if "`LOAD_WITHOUT_TORCH`" in l)
    assert line.endswith("everything in `NEVER_TORCH`, and " + ", ".join(f"`{m}`" for m in lazy[len(never):]) + ".")


def test_the_architecture_page_lists_every_room_and_every_wing_s_files():
    import importlib
    import ensemble
    page = (ROOT / gen.ARCHITECTURE_PAGE).read_text()
    for k, room in enumerate(ensemble.FLOW, 1):
        assert f"| {k} | `{room}`" in page or f"| {k} | [`{room}/`](#{room})" in page, room
        if (ROOT / "ensemble" / room / "__init__.py").exists():
            for j, f in enumerate(importlib.import_module(f"ensemble.{room}").FILES, 1):
                assert f"| {j} | `{room}/{f}.py` |" in page


def test_a_wing_docstring_splits_into_its_files():
    doc = ("Intro line.\n\nFiles, in flow order:\n\n``a``\n    does a,\n    over two lines.\n``b``\n    does b.\n\n"
           "``a`` again, in prose.\n")
    intro, entries, rest = gen.split_wing_docstring(doc, ("a", "b"))
    assert intro == "Intro line."
    assert entries == {"a": "does a, over two lines.", "b": "does b."}
    assert rest == "``a`` again, in prose."


def test_any_typer_app_is_walked_with_its_panels_choices_and_hidden_options():
    """Commands other helpers add come out the same way: a nested group, command and option
    panels, a choice holding a pipe, a hidden option left out, a flag pair, a required argument."""
    toy = typer.Typer()
    sub = typer.Typer(help="Things in a group.")
    toy.add_typer(sub, name="things")

    @toy.command("make", rich_help_panel="Building")
    def make(name: Annotated[str, typer.Argument(help="What to make.")],
             kind: Annotated[Kind, typer.Option(help="Its kind.", rich_help_panel="Shape")] = Kind.c,
             secret: Annotated[int, typer.Option(hidden=True)] = 3,
             loud: Annotated[bool, typer.Option("--loud/--quiet", help="Noise <level>.")] = False,
             out: Annotated[Optional[str], typer.Option(help="Where.")] = None):
        """Make a thing.

        Second paragraph."""

    @sub.command("list")
    def list_(limit: Annotated[int, typer.Option(help="At most this many.")] = 10):
        """List things."""

    page = gen.cli_reference(toy)
    assert "**Building**\n\n| command | what it does |\n|---|---|\n| [`ensemble make`](#ensemble-make) | Make a thing. |" in page
    assert "### ensemble things list\n\n```text\nensemble things list [OPTIONS]\n```\n\nList things." in page
    assert "| `--limit` | `int` | `10` | At most this many. |" in page
    assert "**Arguments**\n\n| name | type | default | help |\n|---|---|---|---|\n| `NAME` | `str` | *required* | What to make. |" in page
    assert "**Shape**\n\n| name | type | default | help |\n|---|---|---|---|\n| `--kind` | `a\\|b` \\| `c` | `c` | Its kind. |" in page
    assert "| `--loud`, `--quiet` | `flag` | `quiet` | Noise &lt;level&gt;. |" in page
    assert "| `--out` | `str` |  | Where. |" in page
    assert "secret" not in page
    assert "Make a thing.\n\nSecond paragraph." in page


def test_a_docstring_s_restructuredtext_becomes_markdown():
    doc = ("Reads ``x`` with :func:`~ensemble.data.read_split`.\n\nConventions\n-----------\n"
           "Format::\n\n    id,prob\n\n``greedy`` (the report's)\n    joins if it\n    does not hurt.\n\n"
           "Quirks:\n\n* one\n  continued;\n* two.\n")
    assert gen.rst_block(doc) == (
        "Reads `x` with `read_split`.\n\n#### Conventions\n\nFormat:\n\n```text\nid,prob\n```\n\n"
        "- **`greedy` (the report's)**: joins if it does not hurt.\n\nQuirks:\n\n- one continued;\n- two.")
