"""The one channel long work reports through. The core calls a :class:`Progress`; the CLI passes a
rich one that renders it (``ensemble/cli/progress.py``); the core itself never formats for a terminal.

Four kinds of news:

- a bar: :meth:`~Progress.start`, :meth:`~Progress.advance`, :meth:`~Progress.stop`;
- a note (:meth:`~Progress.note`): a remark beside the work (rows skipped, a run resumed);
- a line (:meth:`~Progress.say`): the work's own output, one permanent line (an epoch's scores, what
  ``ensemble run`` decided for a configuration), with an optional ``label`` a renderer may set apart;
- an event (:meth:`~Progress.event`): a dict for a live view or a caller's code, ``event["kind"]``
  naming it:

  ``"epoch"``    a training epoch committed: its record entry (:mod:`ensemble.registry.runs`) with
                 ``run_id`` and ``name`` (:func:`ensemble.registry.keeper.train_into`)
  ``"trained"``  ``ensemble run`` trained a configuration here: ``result`` (its ``TrainResult``),
                 ``seconds``
  ``"grid"``     a run of a grid on Ray changed: ``change`` ("queued", "start", "retry", "epoch",
                 "done", "failed"), ``row`` (the run's row, :mod:`ensemble.scale.driver`), ``entry``
                 (the epoch's, for "epoch"; else None)
"""
from __future__ import annotations

from typing import Any


class Progress:
    """No-op progress hooks: the default for library callers and tests."""

    def start(self, description: str, total: int | None = None) -> None: ...
    def advance(self, n: int = 1, **fields: Any) -> None: ...
    def stop(self) -> None: ...
    def note(self, text: str) -> None: ...

    def say(self, text: str, label: str | None = None) -> None:
        """A permanent line of the work's own output, in a terminal as in a pipe; ``label`` (e.g.
        "SAMPLE DATA") heads it: the line reads ``f"{label}: {text}"``."""

    def event(self, event: dict[str, Any]) -> None:
        """Structured news (see the module): ``event["kind"]`` names it."""


NULL = Progress()


class Recorder(Progress):
    """Keeps what it is told: the notes, the lines (labels joined as a terminal shows them) and the
    events, in lists; for a library caller that wants them afterwards, and for tests."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []

    def note(self, text: str) -> None:
        self.notes.append(text)

    def say(self, text: str, label: str | None = None) -> None:
        self.lines.append(f"{label}: {text}" if label else text)

    def event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
