"""``submissions``: the zips ``submit`` wrote, with their time, ensemble, mean dev score and message."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from ..submission import UNSTAMPED, list_submissions
from .options import JsonOpt
from .render import console, fmt, print_json


def submissions(out: Path = typer.Option(Path("submissions"), "--out", help="Folder of the submission zips."),
                as_json: JsonOpt = False) -> None:
    """List past submissions (oldest first), read from each zip's manifest; a damaged zip is listed as damaged."""
    rows = list_submissions(out)
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"{out}: no submissions yet")
        return
    t = Table(title=f"submissions in {out}")
    t.add_column("created", no_wrap=True)
    t.add_column("file", overflow="fold")
    t.add_column("ensemble", overflow="fold")
    t.add_column("mean dev", justify="right", no_wrap=True, min_width=8)
    t.add_column("message", overflow="fold")
    for r in rows:
        if r["damaged"]:
            t.add_row("-", escape(str(r["file"])), "-", "-", f"[red]damaged: {escape(str(r['damaged']))}[/]")
            continue
        ens = str(r["ensemble"]) + ("" if r["verified"] or r["ensemble"] == UNSTAMPED else " (unverified)")
        t.add_row(str(r["created"] or "-").replace("T", " ")[:19], escape(str(r["file"])), escape(ens), fmt(r["mean_dev"]),
                  escape(r["message"] or ""))
    console.print(t)
