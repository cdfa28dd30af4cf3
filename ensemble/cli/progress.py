"""The core's progress hooks (:class:`ensemble.progress.Progress`) on a rich progress bar."""
from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as Bar

from ..progress import Progress
from .render import err, note


class RichProgress(Progress):
    """Bars on stderr when it is a terminal; ``quiet`` (``--json``) shows neither bars nor notes."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.bar: Bar | None = None
        self.task = None

    def start(self, description: str, total: int | None = None) -> None:
        self.stop()
        if self.quiet or not err.is_terminal:   # no bars (and no blank lines) in logs and pipes
            return
        self.bar = Bar(TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                       console=err, transient=True)
        self.bar.start()
        self.task = self.bar.add_task(description, total=total, info="")

    def advance(self, n: int = 1, **fields: Any) -> None:
        if self.bar is not None:
            info = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
            self.bar.update(self.task, advance=n, info=info)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def note(self, text: str) -> None:
        if not self.quiet:
            note(text)

    def say(self, text: str, label: str | None = None) -> None:
        """A permanent line on stderr (above a live bar, if any), flushed at once: in a pipe each
        epoch's line arrives as the epoch ends. A label heads it in bold magenta."""
        if not self.quiet:
            head = f"[bold magenta]{escape(label)}:[/] " if label else ""
            err.print(head + escape(text), soft_wrap=True, highlight=False)
            err.file.flush()
