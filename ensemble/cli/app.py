"""The ``ensemble`` Typer app: every command is registered here, each with the one error path.

Any :class:`EnsembleError` a command raises becomes a red ``error:`` message and exit code 1 (with
``--json``, also a JSON error object on stdout). Any other exception (a bug) becomes a short
message naming the command, the error and the file holding its traceback; ``ensemble --debug``
prints the traceback instead.
"""
from __future__ import annotations

import inspect
import os
import sys
import tempfile
import traceback
from importlib.metadata import PackageNotFoundError, version as package_version

import typer
from typer.core import TyperCommand, TyperGroup

from ..errors import EnsembleError
from ..files import disk_full
from . import help as helptext
from . import analyze, bench, candidates, ensembles, honesty, housekeeping, run, search, select, soup, submissions, submit, train
from .options import USAGE_ERROR
from .render import err, error, print_json

CLICK_EXITS = (typer.Exit, typer.Abort, typer.TyperException)   # click's exits and usage errors (exit 0, 1, 2)
EXIT_CODES = {0: "done (also when the reader of a pipe closed it: `ensemble list | head -1`)",
              1: "an error the user can fix (one red `error:` line; under --json also a JSON error object), "
                 "or a bug (its traceback in a file)",
              2: "a usage error: an unknown option or command, a value an option does not take "
                 "(the same red `error:` line, and the command's -h to read)",
              130: "interrupted (Ctrl-C): what was stopped and how to go on is said"}


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


def _usage(ctx, e: Exception, args: list[str] | None = None) -> None:
    """A usage error (exit 2), in the style of every other error: the red line, the help to read and,
    when the command line asks for --json, the JSON error object."""
    message = _cut(e.format_message().replace("Value error, ", ""))   # the value quoted may be huge
    ctx = getattr(e, "ctx", None) or ctx
    error(message)
    if ctx is not None:
        err.print(f"(`{ctx.command_path} -h` lists the options)", markup=False, highlight=False)
    words = list(args if args is not None else sys.argv[1:])
    if (ctx is not None and ctx.params.get("as_json")) or "--json" in words:
        print_json({"error": message, "type": "UsageError", "exit_code": 2})
    raise typer.Exit(2)


GO_ON = {   # after Ctrl-C: how to go on, by command
    "train": "rerun the same command to continue from the last finished epoch (it resumes; --again starts a new run)",
    "run": "rerun the same command: finished runs are kept and the unfinished one resumes",
    "pretrain": "rerun the same command with --resume to continue from the last checkpoint in --out",
}


def _interrupted(ctx: typer.Context) -> None:
    """Ctrl-C: the live bars stopped, one line saying what was stopped and how to go on, exit 130."""
    for live in list(getattr(err, "_live_stack", [])):
        try:
            live.stop()
        except Exception:   # a bar half torn down: the message matters more
            pass
    how = GO_ON.get(ctx.info_name, "what was being written is removed and what was stored before is unchanged "
                    "(every write is atomic); rerun the same command")
    message = f"interrupted: `{ctx.command_path}` was stopped; {how}"
    if err.is_terminal:
        err.print()   # off the line the bar (or ^C) was on
    error(message)
    if ctx.params.get("as_json"):
        print_json({"error": message, "type": "KeyboardInterrupt", "exit_code": 130})
    raise typer.Exit(130)


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


def _closed_pipe() -> None:
    """The reader of stdout went away (``ensemble list --csv | head -1``): a normal end, as for ``cat``.
    What is still buffered goes nowhere and no error is printed."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):   # no real stdout (a test runner's): nothing left to quiet
        pass


def _stdout_is_devnull() -> bool:
    try:
        return os.path.samestat(os.fstat(sys.stdout.fileno()), os.stat(os.devnull))
    except (OSError, ValueError):
        return False


class _Help:
    """The help page of :mod:`.help`: plain text that folds at spaces, options grouped by panel."""

    def format_usage(self, ctx, formatter) -> None:
        formatter.write_usage(ctx.command_path, " ".join(helptext.usage_pieces(self, ctx)))

    def format_help_text(self, ctx, formatter) -> None:
        if self.help:
            formatter.write("\n" + "".join(f"  {line}".rstrip() + "\n" for line in
                                            helptext.paragraphs(self.help.partition("\f")[0], formatter.width - 2)))

    def format_options(self, ctx, formatter) -> None:
        sections = helptext.records(self, ctx)
        commands = getattr(self, "commands", None)
        if commands:
            sections["Commands"] = [(name, inspect.cleandoc(cmd.help or "").split("\n\n")[0])
                                    for name, cmd in commands.items() if not cmd.hidden]
        for title, rows in sections.items():
            formatter.write(f"\n{title}:\n" + "".join(f"{line}\n" for line in
                                                       helptext.definitions(rows, formatter.width)))

    def format_epilog(self, ctx, formatter) -> None:
        if self.epilog:
            formatter.write("\n" + "".join(f"  {line}".rstrip() + "\n" for line in
                                            helptext.paragraphs(self.epilog, formatter.width - 2)))


class _Usage:
    """Usage errors (exit 2) wherever click finds them, shown by :func:`_usage`."""

    def make_context(self, info_name, args, parent=None, **extra):
        words = list(args)
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except USAGE_ERROR as e:
            _usage(parent, e, words)
        except BrokenPipeError:   # `ensemble -h | head -1`: the help's reader closed the pipe
            _closed_pipe()
            raise typer.Exit(0)

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except USAGE_ERROR as e:
            _usage(ctx, e, args)


class Group(_Help, _Usage, TyperGroup):
    """A group (the app, ``bench``, ``ensembles``) with the help page of :mod:`.help`."""


class Command(_Help, _Usage, TyperCommand):
    """A command whose errors, wherever raised, go through :func:`_fail` (exit code 1)."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except EnsembleError as e:
            _fail(ctx, str(e), {"type": type(e).__name__})
        except USAGE_ERROR as e:   # a callback's check of a value (exit 2)
            _usage(ctx, e)
        except KeyboardInterrupt:
            _interrupted(ctx)
        except CLICK_EXITS:   # click's own exits keep their codes
            raise
        except BrokenPipeError:   # the pipe's reader closed it: a quiet, normal end
            _closed_pipe()
            raise typer.Exit(0)
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


app = typer.Typer(cls=Group, epilog="Exit codes:\n\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items()), no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]})


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the installed version and exit."),
    debug: bool = typer.Option(False, "--debug", help="On an unexpected error, print the full traceback."),
) -> None:
    """Train multitask BERT candidates, keep them in a verified registry, select per-task ensembles with an
    honest held-out estimate and write CS224N leaderboard submissions."""   # --debug is read where an error is handled (_unexpected)


bench_app = typer.Typer(cls=Group, epilog="Exit codes:\n\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items()), no_args_is_help=True, rich_markup_mode=None, help="Measure selection, inference and training speed.")
app.add_typer(bench_app, name="bench")
ensembles_app = typer.Typer(cls=Group, epilog="Exit codes:\n\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items()), no_args_is_help=True, rich_markup_mode=None, help="List, show and remove the ensembles `select` saved.")
app.add_typer(ensembles_app, name="ensembles")
search_app = typer.Typer(cls=search.SearchGroup, no_args_is_help=True,
                         help="Search the training options with Optuna (`ensemble search SPACE --trials N`); show a study.")
app.add_typer(search_app, name="search")

COMMANDS = (   # (group, name, function), in the order `ensemble --help` lists them
    (app, "train", train.train), (app, "list", candidates.list_), (app, "compare", candidates.compare),
    (app, "show", candidates.show),
    (app, "verify", candidates.verify), (app, "remove", candidates.remove), (app, "register", candidates.register),
    (app, "runs", housekeeping.runs), (app, "prune", housekeeping.prune), (app, "env", housekeeping.env),
    (app, "select", select.select), (app, "soup", soup.soup), (app, "predict", select.predict), (app, "validate", submit.validate),
    (app, "submit", submit.submit), (app, "pretrain", train.pretrain),
    (app, "submissions", submissions.submissions), (app, "analyze", analyze.analyze), (app, "report", analyze.report),
    (bench_app, "select", bench.select), (bench_app, "inference", bench.inference),
    (bench_app, "random-base", bench.random_base), (bench_app, "train", bench.train),
    (bench_app, "grid", bench.grid), (bench_app, "search", bench.search), (bench_app, "startup", bench.startup),
    (bench_app, "honesty", honesty.honesty), (bench_app, "soup", bench.soup),
    (ensembles_app, "list", ensembles.list_), (ensembles_app, "show", ensembles.show),
    (ensembles_app, "remove", ensembles.remove),
    (app, "run", run.run),
    (search_app, "start", search.search), (search_app, "show", search.show),
)
for group, name, function in COMMANDS:
    group.command(name, cls=Command, epilog=getattr(function, "examples", None))(function)


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")   # transformers' own bars follow this
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    was_devnull = _stdout_is_devnull()
    try:
        try:
            app()
        finally:
            sys.stdout.flush()   # here, not at interpreter exit, where a closed pipe is an error message
    except BrokenPipeError:
        _closed_pipe()
        sys.exit(0)
    except SystemExit as e:   # rich's own consoles (help) end a closed pipe with exit 1 and stdout on /dev/null
        if e.code == 1 and not was_devnull and _stdout_is_devnull():
            sys.exit(0)
        raise
