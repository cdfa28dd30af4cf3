"""The ``ensemble`` Typer app: every command is registered here, each with the one error path.

Any :class:`EnsembleError` a command raises becomes a red ``error:`` message and exit code 1.
"""
from __future__ import annotations

import os

import typer
from typer.core import TyperCommand

from ..errors import EnsembleError
from . import bench, honesty, registry, select, submit, train
from .render import error


class Command(TyperCommand):
    """A command whose :class:`EnsembleError`, wherever raised, is a red message and exit code 1."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except EnsembleError as e:
            error(str(e))
            raise typer.Exit(1) from None


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train multitask BERT candidates, keep them in a verified registry, build greedy per-task "
                       "ensembles and write CS224N leaderboard submissions.")
bench_app = typer.Typer(no_args_is_help=True, help="Measure selection, inference and training speed.")
app.add_typer(bench_app, name="bench")

COMMANDS = (   # (group, name, function), in the order `ensemble --help` lists them
    (app, "train", train.train), (app, "list", registry.list_), (app, "show", registry.show),
    (app, "verify", registry.verify), (app, "remove", registry.remove), (app, "register", registry.register),
    (app, "select", select.select), (app, "predict", select.predict), (app, "validate", submit.validate),
    (app, "submit", submit.submit), (app, "pretrain", train.pretrain),
    (bench_app, "select", bench.select), (bench_app, "inference", bench.inference),
    (bench_app, "random-base", bench.random_base), (bench_app, "train", bench.train),
    (bench_app, "honesty", honesty.honesty),
    (app, "run", train.run),
)
for group, name, function in COMMANDS:
    group.command(name, cls=Command)(function)


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")   # transformers' own bars follow this
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    app()
