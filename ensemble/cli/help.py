"""Help pages as plain text, written as the source says them: no markup is read from a help string
(``[defaults]`` and ``[[runs]]`` print as written), lines fold at spaces only (never inside a word,
an option name or a hyphenated default) and choice lists fold after a ``|``; options are grouped
under their panel (``rich_help_panel``); arguments are shown as ``NAME``; examples keep their lines.
"""
from __future__ import annotations

import inspect
import re
import textwrap
from typing import Any

COL_MAX = 30   # an option column wider than this puts its help on the next line
SPACING = 2
GENERIC = re.compile(r"<(?:list|tuple|set)\[(\w+)\]>")   # <list[str]>: a repeatable option takes one <str> a time


def fold(text: str, width: int) -> list[str]:
    """One paragraph folded at spaces to ``width`` (a word longer than that stays whole)."""
    return textwrap.wrap(" ".join(text.split()), max(width, 10), break_on_hyphens=False,
                         break_long_words=False) or [""]


def fold_name(name: str, width: int) -> list[str]:
    """An option's names and value list, folded after ``|`` (``<greedy|caruana|...>``) or at spaces."""
    pieces = [p + "|" for p in name.split("|")]
    pieces[-1] = pieces[-1][:-1]
    lines, line = [], ""
    for piece in [w for p in pieces for w in p.replace(" ", " \0").split("\0")]:
        if line and len(line) + len(piece) > width:
            lines.append(line.rstrip())
            line = ""
        line += piece
    return [*lines, line.rstrip()]


def paragraphs(text: str, width: int) -> list[str]:
    """Text as help shows it: paragraphs folded; a paragraph whose lines are indented (examples) keeps
    its lines, each folded on its own."""
    out: list[str] = []
    for par in inspect.cleandoc(text).split("\n\n"):
        if out:
            out.append("")
        lines = par.strip("\b\n").splitlines()
        if par.startswith("\b") or all(line.startswith(" ") for line in lines[1:] or lines):
            for line in lines:
                lead = line[:len(line) - len(line.lstrip())]
                out += [lead + x for x in fold(line, width - len(lead))]
        else:
            out += fold(par, width)
    return out


def _argument_name(param: Any) -> str:
    name = (param.metavar or param.name).upper()
    return name + ("..." if param.nargs != 1 else "")


def usage_pieces(command: Any, ctx: Any) -> list[str]:
    pieces = ["[OPTIONS]"] if any(p.param_type_name == "option" for p in command.get_params(ctx)) else []
    for p in command.get_params(ctx):
        if p.param_type_name == "argument":
            pieces.append(_argument_name(p) if p.required else f"[{_argument_name(p)}]")
    if getattr(command, "commands", None):
        pieces.append("COMMAND [ARGS]...")
    return pieces


def records(command: Any, ctx: Any) -> dict[str, list[tuple[str, str]]]:
    """The help's sections: ``Arguments``, then the options grouped by panel (``Options`` first)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    for p in command.get_params(ctx):
        if p.param_type_name == "argument":
            extra = "" if p.required or p.default in (None, ()) else f"  [default: {p.default}]"
            sections.setdefault("Arguments", []).append((_argument_name(p), (getattr(p, "help", None) or "") + extra))
            continue
        record = p.get_help_record(ctx)
        if record is not None:
            panel = getattr(p, "rich_help_panel", None) or "Options"
            name = GENERIC.sub(lambda m: f"<{m.group(1).lower()}>", record[0])
            sections.setdefault(panel, []).append((name, record[1]))
    order = ["Arguments", "Options"]
    return {k: sections[k] for k in [*[o for o in order if o in sections], *[k for k in sections if k not in order]]}


def definitions(rows: list[tuple[str, str]], width: int, indent: int = 2) -> list[str]:
    """Rows of (name, help), the help in a column beside the names or under a long one."""
    first = min(max((len(n) for n, _ in rows), default=0), COL_MAX) + SPACING
    text_width = max(width - indent - first, 20)
    out: list[str] = []
    for name, text in rows:
        names = fold_name(name, width - indent)
        helps = paragraphs(text, text_width) if text else []
        if len(names) == 1 and len(names[0]) <= first - SPACING and helps:
            out.append(" " * indent + names[0].ljust(first) + helps[0])
            helps = helps[1:]
        else:
            out += [" " * indent + n for n in names]
        out += [" " * (indent + first) + h if h else "" for h in helps]
    return out
