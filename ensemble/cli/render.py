"""Everything the commands print: the two consoles, JSON, messages and the tables (laid out by
:mod:`.tables`, so that no number is ever cut)."""
from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.markup import escape

from ..tasks import TASKS
from .listing import params
from .tables import Col, fit

PIPED_WIDTH = 200   # stdout that is no terminal (a pipe, a log) and no COLUMNS: wide enough for every table


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")   # C0 (but tab and newline), DEL and C1


def visible(text: str) -> str:
    """``text`` with every terminal control character (ESC, BEL, CR, ... : what could move the
    cursor, retitle the window or recolour the terminal) shown as ``\\xNN``: a name or a field
    value prints as text, never as an escape sequence."""
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class Stdout(Console):
    """stdout (or stderr), rich's emoji codes off: COLUMNS when set, else the terminal's width, else (piped, a log) :data:`PIPED_WIDTH`.

    COLUMNS, FORCE_COLOR and TTY_COMPATIBLE are read at each print (rich reads them once, when
    the console is made, which would freeze whatever they were when this module was imported)."""

    def __init__(self, **kwargs: Any) -> None:
        self._forced = kwargs.get("force_terminal")
        kwargs.setdefault("emoji", False)   # a path holding ":smile:" prints as written
        super().__init__(**kwargs)
        self._fixed_width = kwargs.get("width")
        self._width = self._fixed_width

    @property
    def is_terminal(self) -> bool:
        if self._forced is not None:
            return self._forced
        tty_compatible = os.environ.get("TTY_COMPATIBLE", "")
        if tty_compatible in ("0", "1"):
            return tty_compatible == "1"
        if os.environ.get("FORCE_COLOR"):
            return True
        isatty = getattr(self.file, "isatty", None)
        return bool(isatty and isatty())

    def _size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)
        columns = os.environ.get("COLUMNS", "")
        if self._fixed_width is not None or self.is_terminal and not columns.isdigit():
            return size
        if columns.isdigit():
            return ConsoleDimensions(int(columns), size.height)
        return ConsoleDimensions(self._watched_width() or PIPED_WIDTH, size.height)

    def _watched_width(self) -> int | None:
        """``ensemble list | tee list.log``: the width of the terminal someone watches the output on
        (stderr's, else /dev/tty's), when this console writes to a real pipe or file."""
        try:
            self.file.fileno()
        except (AttributeError, OSError, ValueError):   # not a real file (a test runner's buffer)
            return None
        try:
            if os.isatty(2):
                return os.get_terminal_size(2).columns
        except OSError:
            pass
        try:
            tty = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
        except OSError:   # no controlling terminal (a cron job, a batch queue)
            return None
        try:
            return os.get_terminal_size(tty).columns
        except OSError:
            return None
        finally:
            os.close(tty)

    size = property(_size, Console.size.fset)

    def on_broken_pipe(self) -> None:
        """The pipe's reader went away (``ensemble list | head -1``): a normal end, exit 0 and no message,
        as ``cat`` (rich's own exits 1)."""
        self.quiet = True
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.file.fileno())
        except (OSError, ValueError):   # a file with no descriptor (a test runner's)
            pass
        raise SystemExit(0)

    def render_str(self, text: str, **kwargs: Any):
        """Every string printed, markup or not, table cells included, passes here: its control
        characters are made :func:`visible` first (the styles rich adds are its own, after)."""
        return super().render_str(visible(text), **kwargs)


console = Stdout()
err = Stdout(stderr=True)


def fold_fields(text: str, width: int, sep: str = "  ") -> str:
    """A line of fields (joined by two spaces, as the epoch lines) folded at field boundaries to
    ``width``, continuation lines indented; a field wider than that folds at its spaces, never
    inside a number."""
    lines: list[str] = []
    line = ""
    for field in text.split(sep):
        candidate = f"{line}{sep}{field}" if line else field
        if len(candidate) <= width or not line:
            line = candidate
        else:
            lines.append(line)
            line = "  " + field
    lines.append(line)
    out = []
    for line in lines:
        while len(line) > width and " " in line.strip():
            cut = line.rfind(" ", 0, width + 1)
            if cut <= len(line) - len(line.lstrip()):
                break
            out.append(line[:cut].rstrip())
            line = "  " + line[cut:].strip()
        out.append(line)
    return "\n".join(out)


def plural(n: int, word: str) -> str:
    """``1 candidate``, ``2 candidates``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def print_json(obj: Any, **kwargs: Any) -> None:
    print(json.dumps(obj, indent=2, **kwargs))


def error(text: str) -> None:
    err.print(f"[bold red]error:[/] [red]{escape(text)}[/]", soft_wrap=True, highlight=False)


def problems(text: str) -> None:
    err.print(f"[red]{escape(text)}[/]", soft_wrap=True, highlight=False)


def note(text: str) -> None:
    err.print(f"[yellow]{escape(text)}[/]", soft_wrap=True)


def warn(text: str) -> None:
    err.print(f"[bold yellow]warning:[/] [yellow]{escape(text)}[/]", soft_wrap=True, highlight=False)


def sample_banner(sample: bool) -> None:
    if sample:
        err.print("[bold magenta]SAMPLE DATA:[/] [magenta]the packaged sample (not course data); scores mean nothing.[/]")


def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def print_table(title: str, cols: list[Col], rows: list[list[str]], keep_all: bool = False, hint: str = "") -> None:
    """Print a table fitted to the console (see :func:`.tables.fit`), naming the columns it left out."""
    cols = [replace(c, header=visible(c.header)) for c in cols]   # names in titles, headers and cells: escapes shown
    rows = [[visible(v) if isinstance(v, str) else v for v in r] for r in rows]
    fitted = fit(visible(title), cols, rows, console.width, keep_all)
    if fitted.dropped:
        fitted.table.caption = (f"left out to fit {console.width} columns: {', '.join(fitted.dropped)}"
                                + (f" ({hint})" if hint else ""))
    console.print(fitted.table, crop=False)


# -- training ------------------------------------------------------------------------------------
def print_epochs(result, elapsed: float) -> None:
    """The training table; on a narrow terminal tokens/s, time, lr and the losses (last task first) drop."""
    cfg = result.config
    rows = [{**vars(e), "tokens_per_second": e.tokens / max(e.seconds, 1e-9)} for e in result.epochs]
    title = f"{cfg.run_name}  ({params(result.parameters)} parameters, {result.device}, {elapsed:.1f} s)"
    print_epoch_rows(title, list(cfg.tasks), rows, result.candidates)
    if getattr(result, "status", None) == "stopped":
        console.print(f"stopped early after epoch {rows[-1]['epoch']} of {cfg.epochs}: the mean dev score had not "
                      f"improved for {cfg.patience} epochs (--patience)")
    if getattr(result, "resumed_from", 0):
        console.print(f"resumed after epoch {result.resumed_from} (run {result.run_id})")
    console.print(f"registered: {', '.join(result.candidates) or 'none'}")


def print_epoch_rows(title: str, tasks: list[str], rows: list[dict[str, Any]], live) -> None:
    """Epochs as the run's record holds them (:mod:`ensemble.registry.runs`); a candidate not in ``live`` is
    marked superseded."""
    n = len(tasks)
    cols = [Col("epoch", True), *[Col(f"{t} loss", True, 3 + i) for i, t in enumerate(tasks)],
            *[Col(f"{t} dev {TASKS[t].metric[:3]}", True) for t in tasks],
            Col("lr", True, 3 + n), Col("time", True, 4 + n), Col("tokens/s", True, 5 + n), Col("candidate", drop=1)]
    table = []
    for e in rows:
        best = set(e.get("best_for") or [])
        devs = [f"[bold green]{e['dev'][t]:.4f}[/]" if t in best else f"{e['dev'][t]:.4f}" for t in tasks]
        cand = e.get("candidate")
        kept = cand if cand in live else (f"[dim]{cand} (superseded)[/]" if cand else "")
        table.append([str(e["epoch"]), *[f"{e['train_loss'][t]:.4f}" for t in tasks], *devs, f"{e.get('lr', 0):.3g}",
                      f"{e['seconds']:.1f}s", f"{e.get('tokens_per_second', 0):,.0f}", kept])
    print_table(title, cols, table)


def print_run_record(record: dict[str, Any], live) -> None:
    """``show RUN``: a run's record, its epoch table and its candidates."""
    tasks = list((record.get("config") or {}).get("tasks") or [])
    title = (f"run {record['run_id']}: {record.get('name')}  ({record.get('status')}, {params(record.get('parameters'))} "
             f"parameters, {record.get('device')}, {record.get('precision')})")
    print_epoch_rows(title, tasks, record.get("epochs") or [], live)
    console.print(f"started {record.get('started')}, finished {record.get('finished') or '-'}; "
                  f"candidates: {', '.join(record.get('candidates') or []) or 'none yet'}")

