"""The app: every command, bench ones included, turns an EnsembleError into a red message and exit 1."""
from __future__ import annotations

import pytest
import typer

from ensemble.cli import app
from ensemble.cli.app import Command
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.errors import EnsembleError


def test_errors_are_red_messages_with_exit_1(tmp_path, invoke):
    r = invoke("select", "--data", SAMPLE, "--registry", tmp_path / "empty")
    assert r.exit_code == 1
    assert "holds no candidates" in r.output
    r = invoke("show", "nope", "--registry", tmp_path / "empty")
    assert r.exit_code == 1 and "no candidate 'nope'" in r.output
    r = invoke("train", "--data", tmp_path / "missing", "--base", "minilm")
    assert r.exit_code == 1 and "no such folder" in r.output
    r = invoke("train", "--data", SAMPLE, "--tasks", "sst,nli")
    assert r.exit_code == 1 and "unknown task 'nli'" in r.output
    r = invoke("select", "--data", SAMPLE, "--registry", tmp_path / "empty", "--mode", "bagging")
    assert r.exit_code == 1 and "--mode bagging" in r.output


def _leaves(group, path: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):   # a group (bench)
            yield from _leaves(cmd, (*path, name))
        else:
            yield (*path, name), cmd


COMMANDS = dict(_leaves(typer.main.get_command(app)))


def test_every_command_is_registered():
    assert sorted(" ".join(p) for p in COMMANDS) == sorted([
        "train", "list", "show", "verify", "remove", "register", "select", "predict", "validate", "submit",
        "pretrain", "run", "bench select", "bench inference", "bench random-base", "bench train", "bench honesty"])


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_every_command_turns_an_ensemble_error_into_a_red_message(path, capsys):
    """Each registered command runs through the one handler: its body's EnsembleError is exit 1, one line."""
    cmd = COMMANDS[path]
    assert isinstance(cmd, Command)

    def boom(**params):
        raise EnsembleError(f"boom in {' '.join(path)}")

    cmd.callback = boom   # a fresh click command per get_command: the app itself is untouched
    with pytest.raises(typer.Exit) as e:
        cmd.invoke(typer.Context(cmd, info_name=path[-1]))
    assert e.value.exit_code == 1
    assert capsys.readouterr().err == f"error: boom in {' '.join(path)}\n"
