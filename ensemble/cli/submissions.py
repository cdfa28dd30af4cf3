"""``submissions``: the zips ``submit`` wrote, with their time, ensemble, mean dev score and message."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from ..leaderboard.submission import UNSTAMPED, list_submissions
from .options import JsonOpt
from .render import console, fmt, print_json, print_table
from .tables import Col


def submissions(out: Path = typer.Option(Path("submissions"), "--out", help="Folder of the submission zips."),
                as_json: JsonOpt = False) -> None:
    """List past submissions (oldest first), read from each zip's manifest; a damaged zip is listed as damaged."""
    rows = list_submissions(out)
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"{escape(str(out))}: no submissions yet")
        return
    widest = max(len(str(r["file"])) for r in rows)   # a file name (its score in it) is never folded
    cols = [Col("created", True), Col("file", floor=widest), Col("ensemble", drop=2), Col("mean dev", True),
            Col("message", drop=1)]
    table = []
    for r in rows:
        if r["damaged"]:
            table.append(["-", escape(str(r["file"])), "-", "-", f"[red]damaged: {escape(str(r['damaged']))}[/]"])
            continue
        ens = str(r["ensemble"]) + ("" if r["verified"] or r["ensemble"] == UNSTAMPED else " (unverified)")
        table.append([str(r["created"] or "-").replace("T", " ")[:19], escape(str(r["file"])), escape(ens),
                      fmt(r["mean_dev"]), escape(r["message"] or "")])
    print_table(f"submissions in {out}", cols, table)
