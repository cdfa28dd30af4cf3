"""The ``ensemble`` command line, the only rooms that import typer and rich.

``app`` (the Typer app, for typer's CliRunner) and ``main`` (the console script) come from
:mod:`.app`; the commands live by group in ``train``, ``registry``, ``select``, ``submit`` and
``bench``, their options in ``options``, their printing in ``render`` and ``progress``.
"""
from .app import app, main

__all__ = ["app", "main"]
