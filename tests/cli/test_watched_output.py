"""Output where people read it: ``| tee`` lays tables out to the terminal someone watches, epoch
lines fold at their fields in a terminal and stay one line in a log, and a long phase in a log
says when it starts and how far it got (a heartbeat, every ENSEMBLE_HEARTBEAT seconds)."""
from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios

from ensemble.cli import progress as progress_mod
from ensemble.cli.render import Stdout, fold_fields

EPOCH = ("epoch 3/10  loss sst 1.2345 para 0.4567 sts 2.3456  dev sst 0.4712* para 0.8123 sts 0.8765*  "
         "mean 0.7200  lr 1e-05  12.3 s  12,345 tokens/s  candidate 0123abcd (best for sst, sts)")


def test_a_table_piped_to_tee_is_laid_out_to_the_terminal_on_stderr(registry_with_imports):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TTY_COMPATIBLE", "FORCE_COLOR")}
    r = subprocess.run([sys.executable, "-m", "ensemble", "list", "--columns", "all", "--registry",
                        str(registry_with_imports)], stdout=subprocess.PIPE, stderr=slave, env=env, check=True)
    os.close(slave)
    os.close(master)
    lines = r.stdout.decode().splitlines()
    assert lines and max(len(line) for line in lines) <= 80, "\n".join(lines)
    assert "left out to fit 80 columns" in r.stdout.decode()


def test_epoch_lines_fold_at_fields_in_a_terminal():
    for width in (100, 80, 60):
        folded = fold_fields(EPOCH, width)
        lines = folded.splitlines()
        assert len(lines) > 1 and all(len(line) <= width for line in lines), folded
        assert " ".join(folded.split()) == " ".join(EPOCH.split())
        fields = EPOCH.split("  ")
        for line in lines:   # each line holds whole fields
            assert all(part in fields for part in line.strip().split("  ")), line
    assert "mean 0.7200" in fold_fields(EPOCH, 100) and "(best for sst, sts)" in fold_fields(EPOCH, 80)


def _progress(monkeypatch, terminal: bool, width: int = 60):
    out = io.StringIO()
    monkeypatch.setattr(progress_mod, "err", Stdout(file=out, force_terminal=terminal, width=width))
    return out


def test_epoch_lines_stay_one_line_in_a_log(monkeypatch):
    out = _progress(monkeypatch, terminal=False)
    progress_mod.RichProgress().say(EPOCH)
    assert out.getvalue() == EPOCH + "\n"
    out = _progress(monkeypatch, terminal=True)
    progress_mod.RichProgress().say(EPOCH)
    assert out.getvalue() == fold_fields(EPOCH, 60) + "\n"


def test_a_long_phase_in_a_log_says_it_starts_and_beats(monkeypatch):
    monkeypatch.setenv("ENSEMBLE_HEARTBEAT", "10")
    out = _progress(monkeypatch, terminal=False, width=200)
    now = [0.0]
    p = progress_mod.RichProgress(clock=lambda: now[0])
    p.start("predict para dev", 2999)
    for _ in range(6):
        now[0] += 4.0
        p.advance(400)
    p.stop()
    p.start("dev sst", 20)   # a short phase says nothing
    p.advance(20)
    assert out.getvalue().splitlines() == ["predict para dev: 2,999 steps", "predict para dev: 1,200/2,999 after 12 s",
                                           "predict para dev: 2,400/2,999 after 24 s"]
