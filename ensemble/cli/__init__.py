"""The ``ensemble`` command line: the only wing that imports typer and rich. Each command is a thin
function over the core; any :class:`~ensemble.errors.EnsembleError` it raises is one red line and
exit 1 (:mod:`.app`), anything else a bug report with its traceback in a file.

Files, in flow order:

``options``
    the options several commands share (``Annotated`` aliases), the value sets, and the training
    options made from :class:`~ensemble.training.config.TrainConfig`.
``tables``
    column widths decided before rich lays a table out, so that no number is ever cut.
``help``
    help pages as plain text: help strings as written, folded at spaces, options by panel.
``listing``
    the columns and filters of ``list`` and ``compare``.
``render``
    the two consoles, JSON, messages and the tables every command prints.
``progress``
    the core's progress events on a rich bar, with permanent lines in logs.
``candidates``
    ``list``, ``compare``, ``show``, ``verify``, ``remove``, ``register``.
``housekeeping``
    ``runs``, ``prune`` and ``env``.
``train``
    ``train`` and ``pretrain``.
``select``
    ``select`` and ``predict``.
``soup``
    ``soup``: weights averaged into one model per task (model soups).
``submit``
    ``validate`` and ``submit``.
``run``
    ``run``: a grid here or on Ray, then select, write, validate and zip.
``search``
    ``search SPACE`` (Optuna trials as training runs) and ``search show``.
``submissions``
    ``submissions``: the zips ``submit`` wrote.
``ensembles``
    ``ensembles list|show|remove``.
``analyze``
    ``analyze`` and ``report``.
``honesty``
    ``bench honesty``.
``bench``
    the other ``bench`` commands.
``app``
    the Typer app: every command registered, the one error path, ``main``.

``app`` (the Typer app, for typer's CliRunner) and ``main`` (the console script) are its public names.
"""
from .app import app, main

FILES = ("options", "tables", "help", "listing", "render", "progress", "candidates", "housekeeping", "train", "select",
         "soup", "submit", "run", "search", "submissions", "ensembles", "analyze", "honesty", "bench", "app")
__all__ = ["app", "main"]
