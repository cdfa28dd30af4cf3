"""The app: every command, bench ones included, turns an EnsembleError into a red message and exit 1
(and a JSON error under --json), a bug into a short message with its traceback in a file; -h, help
text and choices everywhere; --version and shell completion."""
from __future__ import annotations

import json
import tempfile
from importlib.metadata import version

import pytest
import typer
from typer.testing import CliRunner

from ensemble import workflow
from ensemble.cli import app, options
from ensemble.cli.app import Command
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.errors import EnsembleError
from ensemble.selection import MODES


def test_errors_are_red_messages_with_exit_1(tmp_path, invoke):
    r = invoke("select", "--data", SAMPLE, "--registry", tmp_path / "empty")
    assert r.exit_code == 1
    assert "no registry here" in r.output
    (tmp_path / "empty" / "candidates").mkdir(parents=True)   # a registry whose candidates were all removed
    assert "holds no candidates" in invoke("select", "--data", SAMPLE, "--registry", tmp_path / "empty").output
    r = invoke("show", "nope", "--registry", tmp_path / "empty")
    assert r.exit_code == 1 and "no candidate 'nope'" in r.output
    r = invoke("train", "--data", tmp_path / "missing", "--base", "minilm")
    assert r.exit_code == 1 and "no such folder" in r.output
    r = invoke("train", "--data", SAMPLE, "--tasks", "sst,nli")
    assert r.exit_code == 2 and "unknown task 'nli'" in r.output   # a value the option does not take: usage
    r = invoke("select", "--data", SAMPLE, "--registry", tmp_path / "empty", "--mode", "bagging")
    assert r.exit_code == 2 and "'bagging' is not one of 'auto'," in r.output   # a choice: click's usage error


def _leaves(group, path: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):   # a group (bench)
            yield from _leaves(cmd, (*path, name))
        else:
            yield (*path, name), cmd


COMMANDS = dict(_leaves(typer.main.get_command(app)))


def test_every_command_is_registered():
    assert sorted(" ".join(p) for p in COMMANDS) == sorted([
        "train", "list", "compare", "show", "verify", "remove", "register", "runs", "prune", "env", "select", "soup",
        "predict", "validate", "submit", "pretrain", "run", "submissions", "bench select", "bench inference",
        "bench random-base", "bench train", "bench grid", "bench search", "bench startup", "bench honesty", "bench soup",
        "ensembles list", "ensembles show", "ensembles remove", "analyze", "report", "search start", "search show"])


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


def test_a_failed_json_command_prints_a_json_error_too(tmp_path, invoke):
    r = invoke("select", "--data", SAMPLE, "--registry", tmp_path / "empty", "--json")
    assert r.exit_code == 1
    d = json.loads(r.stdout)
    assert d["type"] == "EnsembleError" and "no registry here" in d["error"]
    assert "\nerror: " in r.stderr and "no registry here" in r.stderr   # after the sample banner
    r = invoke("select", "--data", SAMPLE, "--registry", tmp_path / "empty")   # without --json: stdout stays empty
    assert r.exit_code == 1 and r.stdout == ""


def _broken_select(*args, **kwargs):
    raise ValueError("a bug's first line\nand its second")


def test_an_unexpected_error_is_a_short_message_and_a_traceback_file(tmp_path, monkeypatch, invoke):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(workflow, "select", _broken_select)
    r = invoke("select", "--data", SAMPLE, "--registry", tmp_path, "--json")
    assert r.exit_code == 1
    assert "select` failed unexpectedly: ValueError: a bug's first line" in r.stderr
    assert "and its second" not in r.stderr and "Traceback" not in r.stderr
    d = json.loads(r.stdout)
    assert d["type"] == "ValueError" and d["unexpected"] is True
    (written,) = tmp_path.glob("ensemble-traceback-*")
    assert d["traceback"] == str(written) and str(written) in r.stderr
    text = written.read_text()
    assert text.startswith("Traceback (most recent call last)") and "_broken_select" in text
    assert "and its second" in text


def test_debug_prints_the_traceback_instead(tmp_path, monkeypatch, invoke):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(workflow, "select", _broken_select)
    r = invoke("--debug", "select", "--data", SAMPLE, "--registry", tmp_path)
    assert r.exit_code == 1
    assert "Traceback (most recent call last)" in r.stderr and "_broken_select" in r.stderr
    assert "failed unexpectedly: ValueError: a bug's first line" in r.stderr
    assert not list(tmp_path.glob("ensemble-traceback-*"))


def test_an_interrupt_is_not_reported_as_a_bug(tmp_path, monkeypatch, invoke):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(workflow, "select", interrupted)
    r = invoke("select", "--data", SAMPLE, "--registry", tmp_path)
    assert r.exit_code != 0 and "unexpectedly" not in r.output
    assert not list(tmp_path.glob("ensemble-traceback-*"))


def test_version_and_completion(invoke):
    r = invoke("--version")
    assert r.exit_code == 0 and r.stdout == f"ensemble {version('ensemble')}\n"
    r = invoke("--show-completion", "bash")
    assert r.exit_code == 0 and "complete -o default" in r.stdout
    assert "--install-completion" in invoke("-h").stdout


@pytest.mark.parametrize("path", [(), *COMMANDS, ("bench",), ("ensembles",)], ids=lambda p: " ".join(p) or "root")
def test_every_command_takes_h_and_says_no_spec(path, invoke):
    r = invoke(*path, "-h")
    assert r.exit_code == 0 and "Usage:" in r.stdout
    assert r.stdout == invoke(*path, "--help").stdout
    assert "SPEC" not in r.stdout


OWNED = [p for p in COMMANDS if p[0] not in ("list", "show", "verify", "remove", "register", "validate", "submit")]


@pytest.mark.parametrize("path", OWNED, ids=" ".join)
def test_every_option_has_help(path):
    cmd = COMMANDS[path]
    bare = [p.name for p in cmd.params if not getattr(p, "help", None)]
    assert bare == [], f"options without help text: {bare}"


def test_the_root_options_have_help():
    root = typer.main.get_command(app)
    assert [p.name for p in root.params if not p.help] == []


def _help(*path: str) -> str:
    return " ".join(CliRunner().invoke(app, [*path, "-h"], env={"COLUMNS": "250"}).stdout.split())


def test_fixed_values_are_choices_read_from_the_core(invoke):
    """The value sets come from the torch-free configuration modules (no copies to keep in step)."""
    from ensemble.modeling.config import ARCHITECTURES, INFER_PRECISIONS
    from ensemble.scale.grid import PRESETS

    assert options.ARCHITECTURES is ARCHITECTURES and options.INFER_PRECISIONS is INFER_PRECISIONS
    assert options.PRESETS is PRESETS and options.SELECT_MODES == ("auto", *MODES)
    assert "<constant|linear|cosine|slanted>" in _help("train")
    assert "<multi|cerberus|triple|static|multi+triple>" in _help("train")
    assert "<auto|fp32|bf16|fp16>" in _help("train")
    assert "<fp32|bf16|fp16>" in _help("predict") and "<quick|paper>" in _help("run")
    assert "<auto|greedy|greedy-strict|caruana|bagged>" in _help("select") and "<greedy|caruana|both>" in _help("bench", "select")
    r = invoke("train", "--architecture", "quad")
    assert r.exit_code == 2 and "'quad' is not one of" in r.output


def test_the_message_comes_even_when_the_traceback_file_cannot_be_written(tmp_path, monkeypatch, invoke):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))   # mkstemp fails there
    monkeypatch.setattr(workflow, "select", _broken_select)
    r = invoke("select", "--data", SAMPLE, "--registry", tmp_path, "--json")
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    assert "select` failed unexpectedly: ValueError: a bug's first line" in r.stderr
    assert "the traceback could not be written" in r.stderr and json.loads(r.stdout)["traceback"] is None


def test_a_full_disk_anywhere_is_one_message(tmp_path, monkeypatch, invoke):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.csv"))

    monkeypatch.setattr(workflow, "select", full)
    r = invoke("select", "--data", SAMPLE, "--registry", tmp_path, "--json")
    assert r.exit_code == 1 and "unexpectedly" not in r.stderr
    assert f"{tmp_path / 'x.csv'}: the disk is full; what was being written is removed" in r.stderr
    assert json.loads(r.stdout)["disk_full"] is True
