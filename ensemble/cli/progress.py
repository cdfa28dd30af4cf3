"""The core's progress hooks (:class:`ensemble.progress.Progress`) on a rich progress bar."""
from __future__ import annotations

import os
import time
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as Bar

from ..progress import Progress
from .render import err, fold_fields, note

LONG_PHASE = 1000   # in a log, a phase of at least this many steps says when it starts
HEARTBEAT_ENV = "ENSEMBLE_HEARTBEAT"   # seconds between a long phase's lines in a log (default 60; 0: every step)


def heartbeat_seconds() -> float:
    text = os.environ.get(HEARTBEAT_ENV, "")
    try:
        return max(float(text), 0.0) if text else 60.0
    except ValueError:
        return 60.0


class RichProgress(Progress):
    """Bars on stderr when it is a terminal; ``quiet`` (``--json``) shows neither bars nor notes."""

    def __init__(self, quiet: bool = False, clock=time.monotonic):
        self.quiet = quiet
        self.bar: Bar | None = None
        self.task = None
        self.clock = clock
        self.phase: dict[str, Any] | None = None   # in a log: the phase, its steps done and when it last spoke

    def start(self, description: str, total: int | None = None) -> None:
        self.stop()
        if self.quiet or not err.is_terminal:   # no bars (and no blank lines) in logs and pipes: lines instead
            now = self.clock()
            self.phase = {"description": description, "total": total, "done": 0, "started": now, "said": now}
            if total and total >= LONG_PHASE:
                self.say(f"{description}: {total:,} steps")
            return
        self.bar = Bar(TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                       console=err, transient=True)
        self.bar.start()
        self.task = self.bar.add_task(description, total=total, info="")

    def advance(self, n: int = 1, **fields: Any) -> None:
        if self.phase is not None:
            self._heartbeat(n)
        if self.bar is not None:
            info = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
            self.bar.update(self.task, advance=n, info=info)

    def _heartbeat(self, n: int) -> None:
        """In a log, a long phase says how far it got every :func:`heartbeat_seconds`."""
        p = self.phase
        p["done"] += n
        now = self.clock()
        if now - p["said"] >= heartbeat_seconds():
            p["said"] = now
            of = f"/{p['total']:,}" if p["total"] else ""
            self.say(f"{p['description']}: {p['done']:,}{of} after {now - p['started']:.0f} s")

    def stop(self) -> None:
        self.phase = None
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def note(self, text: str) -> None:
        if not self.quiet:
            note(text)

    def say(self, text: str, label: str | None = None) -> None:
        """A permanent line on stderr (above a live bar, if any), flushed at once: in a pipe each
        epoch's line arrives as the epoch ends. A label heads it in bold magenta."""
        if not self.quiet:   # in a terminal folded at its fields to the width; in a log one line
            head = f"[bold magenta]{escape(label)}:[/] " if label else ""
            body = fold_fields(text, err.width) if err.is_terminal else text
            err.print(head + escape(body), soft_wrap=True, highlight=False)
            err.file.flush()
