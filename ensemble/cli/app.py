"""The ``ensemble`` Typer app: every command is registered here, each with the one error path.

Any :class:`EnsembleError` a command raises becomes a red ``error:`` message and exit code 1 (with
``--json``, also a JSON error object on stdout). Any other exception (a bug) becomes a short
message naming the command, the error and the file holding its traceback; ``ensemble --debug``
prints the traceback instead.
"""
from __future__ import annotations

import os
import tempfile
import traceback
from importlib.metadata import PackageNotFoundError, version as package_version

import typer
from typer.core import TyperCommand

from ..errors import EnsembleError
from ..files import disk_full
from . import analyze, bench, candidates, ensembles, honesty, run, select, submissions, submit, train
from .render import err, error, print_json

CLICK_EXITS = (typer.Exit, typer.Abort, typer.TyperException)
USAGE_ERROR = typer.BadParameter.__mro__[1]   # click's UsageError, as typer ships it   # click's exits and usage errors (exit 0, 1, 2)


LINE_CHARS = 4000   # the longest line an error message shows whole (a 10 MB field is cut, with its length)


def _cut(message: str) -> str:
    """``message`` with each line over :data:`LINE_CHARS` characters cut in the middle, saying how
    long it was: the last guard behind :func:`ensemble.errors.shown`, so an error never floods the terminal."""
    half = LINE_CHARS // 2
    return "\n".join(line if len(line) <= LINE_CHARS else
                     f"{line[:half]} ... ({len(line):,} characters in all) ... {line[-200:]}"
                     for line in message.split("\n"))


def _fail(ctx: typer.Context, message: str, fields: dict) -> None:
    """The red line on stderr and, when the command was given ``--json``, the error object on stdout."""
    message = _cut(message)
    error(message)
    if ctx.params.get("as_json"):
        print_json({"error": message, **fields})
    raise typer.Exit(1)


def _unexpected(ctx: typer.Context, e: Exception) -> None:
    """A bug: the traceback (printed under ``--debug``, else written to a file) and a short message."""
    text = traceback.format_exc()
    if ctx.find_root().params.get("debug"):
        err.print(text, markup=False, highlight=False, end="")
        where, hint = None, "the traceback is above"
    else:
        try:
            fd, where = tempfile.mkstemp(prefix="ensemble-traceback-", suffix=".txt")
            with os.fdopen(fd, "w") as f:
                f.write(text)
            hint = f"the full traceback is in {where} (`ensemble --debug ...` prints it instead)"
        except OSError as write_error:   # a full disk, say: the message still comes, without the file
            where, hint = None, f"the traceback could not be written ({write_error}); `ensemble --debug ...` prints it"
    first = str(e).splitlines()[0] if str(e) else ""
    _fail(ctx, f"`{ctx.command_path}` failed unexpectedly: {type(e).__name__}: {first}\n  {hint}; please report it",
          {"type": type(e).__name__, "unexpected": True, "traceback": where})


class Command(TyperCommand):
    """A command whose errors, wherever raised, go through :func:`_fail` (exit code 1)."""

    def make_context(self, info_name, args, parent=None, **extra):
        """Parsing the options: a usage error's message (which quotes the value given) cut by :func:`_cut`."""
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except USAGE_ERROR as e:
            e.message = _cut(e.message)
            raise

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except EnsembleError as e:
            _fail(ctx, str(e), {"type": type(e).__name__})
        except CLICK_EXITS:   # click's own exits and usage errors keep their codes
            raise
        except OSError as e:
            full = disk_full(e, e.filename or "a file", "what was being written is removed and what was stored before "
                             "is unchanged (every write is atomic)")
            if full is None:
                _unexpected(ctx, e)
            _fail(ctx, str(full), {"type": "EnsembleError", "disk_full": True})
        except Exception as e:
            _unexpected(ctx, e)


def _version(value: bool) -> None:
    if value:
        try:
            typer.echo(f"ensemble {package_version('ensemble')}")
        except PackageNotFoundError:   # run from a source tree that was never installed
            typer.echo("ensemble (not installed: no version)")
        raise typer.Exit()


app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the installed version and exit."),
    debug: bool = typer.Option(False, "--debug", help="On an unexpected error, print the full traceback."),
) -> None:
    """Train multitask BERT candidates, keep them in a verified registry, build greedy per-task ensembles and
    write CS224N leaderboard submissions."""   # --debug is read where an error is handled (_unexpected)


bench_app = typer.Typer(no_args_is_help=True, help="Measure selection, inference and training speed.")
app.add_typer(bench_app, name="bench")
ensembles_app = typer.Typer(no_args_is_help=True, help="List, show and remove the ensembles `select` saved.")
app.add_typer(ensembles_app, name="ensembles")

COMMANDS = (   # (group, name, function), in the order `ensemble --help` lists them
    (app, "train", train.train), (app, "list", candidates.list_), (app, "compare", candidates.compare),
    (app, "show", candidates.show),
    (app, "verify", candidates.verify), (app, "remove", candidates.remove), (app, "register", candidates.register),
    (app, "select", select.select), (app, "predict", select.predict), (app, "validate", submit.validate),
    (app, "submit", submit.submit), (app, "pretrain", train.pretrain),
    (app, "submissions", submissions.submissions), (app, "analyze", analyze.analyze), (app, "report", analyze.report),
    (bench_app, "select", bench.select), (bench_app, "inference", bench.inference),
    (bench_app, "random-base", bench.random_base), (bench_app, "train", bench.train),
    (bench_app, "grid", bench.grid),
    (bench_app, "honesty", honesty.honesty),
    (ensembles_app, "list", ensembles.list_), (ensembles_app, "show", ensembles.show),
    (ensembles_app, "remove", ensembles.remove),
    (app, "run", run.run),
)
for group, name, function in COMMANDS:
    group.command(name, cls=Command, epilog=getattr(function, "examples", None))(function)


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")   # transformers' own bars follow this
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    app()
