"""The rich progress: the core's Progress hooks, silent in pipes, notes hidden by --json."""
from __future__ import annotations

from ensemble.cli.progress import RichProgress
from ensemble.progress import Progress


def test_rich_progress_is_a_progress_and_quiet_off_a_terminal(capsys):
    p = RichProgress()
    assert isinstance(p, Progress)
    p.start("work", total=2)        # stderr is not a terminal here: no bar, no blank lines
    p.advance(1, loss=0.5)
    p.stop()
    p.note("a [note]")
    RichProgress(quiet=True).note("hidden")
    assert capsys.readouterr().err == "a [note]\n"
