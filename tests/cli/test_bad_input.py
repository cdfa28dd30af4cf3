"""Input the tool used to accept silently or answer with a traceback (issue 13): each is now exit 1
with one message naming the file, line or option and what was expected."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.tasks import TASKS

QUALITY = {"sst": 0.6, "para": 0.6, "sts": 0.6}


def refused(r, *parts: str) -> str:
    """The run ended with exit 1, no traceback, and a message holding every part."""
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output, r.output
    for p in parts:
        assert p in r.output, (p, r.output)
    return r.output


def data_copy(tmp_path: Path, header_only: tuple[str, str] | None = None) -> Path:
    """The packaged sample, copied; with ``header_only = (task, split)`` that file keeps only its header."""
    d = tmp_path / "data"
    shutil.copytree(SAMPLE, d)
    if header_only is not None:
        f = d / TASKS[header_only[0]].file_name(header_only[1])
        f.write_text(f.read_text().split("\n", 1)[0] + "\n")
    return d


def set_value(folder: Path, name: str, row: int, value: str) -> Path:
    """Replace the last field of data row ``row`` of a prediction file."""
    f = folder / name
    lines = f.read_text().split("\n")
    lines[row] = lines[row].rsplit(",", 1)[0] + "," + value
    f.write_text("\n".join(lines))
    return f


# -- header-only course files ----------------------------------------------------------------
def test_register_with_a_header_only_dev_file(tmp_path, invoke, fake_predictions):
    data = data_copy(tmp_path, ("sts", "dev"))
    preds = fake_predictions(tmp_path / "p", {"sts": 0.6}, seed=0)
    r = invoke("register", "--predictions", preds, "--name", "x", "--data", data, "--registry", tmp_path / "reg")
    refused(r, "sts-dev.csv", "no example rows after the header", "dev file of task 'sts'")


def test_select_with_a_header_only_dev_file(tmp_path, invoke, registry_with_imports):
    data = data_copy(tmp_path, ("para", "dev"))
    (registry_with_imports / "registry.json").unlink()   # its recorded data would be named first
    r = invoke("select", "--data", data, "--registry", registry_with_imports)
    refused(r, "quora-dev.csv", "no example rows after the header")


def test_train_with_a_header_only_train_file(tmp_path, invoke, tiny_base_dir):
    data = data_copy(tmp_path, ("sst", "train"))
    r = invoke("train", "--data", data, "--base", tiny_base_dir, "--epochs", "1", "--tasks", "sst",
               "--registry", tmp_path / "reg", "--device", "cpu")
    refused(r, "ids-sst-train.csv", "no example rows after the header", "train file of task 'sst'")
    assert not (tmp_path / "reg" / "candidates").exists() or not any((tmp_path / "reg" / "candidates").iterdir())


# -- imported prediction values ---------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    ("1_0", "column 'score' is '1_0'; expected a number"),
    ("1e308", "column 'score' is 1e+308; expected a similarity score within +-1e+06"),
    ("-2e6", "column 'score' is -2000000.0; expected a similarity score within +-1e+06"),
])
def test_register_refuses_bad_sts_values(tmp_path, invoke, fake_predictions, value, expected):
    preds = fake_predictions(tmp_path / "p", {"sts": 0.6}, seed=0)
    set_value(preds, "sts-dev.csv", 3, value)
    r = invoke("register", "--predictions", preds, "--name", "x", "--data", SAMPLE, "--registry", tmp_path / "reg")
    refused(r, "sts-dev.csv:4:", expected)


def test_a_huge_field_is_shown_cut(tmp_path, invoke, fake_predictions):
    preds = fake_predictions(tmp_path / "p", {"sts": 0.6}, seed=0)
    set_value(preds, "sts-dev.csv", 2, "x" * 10_000_000)
    r = invoke("register", "--predictions", preds, "--name", "x", "--data", SAMPLE, "--registry", tmp_path / "reg")
    out = refused(r, "sts-dev.csv:3:", "... (10,000,002 characters)", "expected a number")
    assert len(out) < 1000


# -- options ----------------------------------------------------------------------------------
def test_parameters_must_be_positive(tmp_path, invoke, fake_predictions):
    preds = fake_predictions(tmp_path / "p", QUALITY, seed=0)
    r = invoke("register", "--predictions", preds, "--name", "x", "--data", SAMPLE, "--registry", tmp_path / "reg",
               "--parameters", "-5")
    refused(r, "--parameters -5: expected a positive integer")
    assert not (tmp_path / "reg" / "candidates").exists()


def train_refused(tmp_path, invoke, base, *option: str, code: int = 2) -> str:
    """``ensemble train`` on the sample with ``option``: the message it was refused with (exit 2: a usage error, as
    a value the configuration's check refuses; exit 1 for the device, checked when it is looked for)."""
    r = invoke("train", "--data", SAMPLE, "--base", base, "--epochs", "1", *option, "--registry", tmp_path / "reg")
    assert r.exit_code == code and "Traceback" not in r.output, r.output
    assert not (tmp_path / "reg" / "candidates").exists()
    return r.output


@pytest.mark.parametrize("option, message", [
    *[(("--max-length", n), "--max-length must be >= 5 tokens") for n in ("0", "-5", "4")],
    *[(("--seed", s), "--seed must be in [0, 2^32)") for s in ("-1", str(2**32))],
])
def test_bad_train_options_are_refused_before_any_work(tmp_path, invoke, tiny_base_dir, option, message):
    assert message in train_refused(tmp_path, invoke, tiny_base_dir, *option, code=2)


def test_max_length_beyond_the_base_is_said(tmp_path, invoke, tiny_base_dir):
    """A cap beyond the base (a preset's 128 on a 64-position base) trains at the base's limit, and says so."""
    r = invoke("train", "--data", SAMPLE, "--base", tiny_base_dir, "--epochs", "1", "--max-length", "100000",
               "--registry", tmp_path / "reg")
    assert r.exit_code == 0, r.output
    assert "--max-length 100000: the base" in r.output and "takes at most 64 tokens" in r.output
    assert "inputs are cut at 64" in r.output


# -- paths ------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [("list",), ("select", "--data", SAMPLE)])
def test_registry_that_is_a_file(tmp_path, invoke, command):
    f = tmp_path / "reg.txt"
    f.write_text("not a registry\n")
    refused(invoke(*command, "--registry", f), f"{f}: is a file, not a registry folder")


def test_predict_and_submit_out_an_existing_file(tmp_path, invoke, registry_with_imports):
    reg = registry_with_imports
    assert invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "0").exit_code == 0
    taken = tmp_path / "taken"
    taken.write_text("mine\n")
    r = invoke("predict", "--data", SAMPLE, "--registry", reg, "--out", taken)
    refused(r, f"--out {taken}: is a file, not a folder; expected a folder for the leaderboard files")
    out = tmp_path / "predictions"
    assert invoke("predict", "--data", SAMPLE, "--registry", reg, "--out", out).exit_code == 0
    r = invoke("submit", "--predictions", out, "--out", taken, "--data", SAMPLE, "--registry", reg)
    refused(r, f"--out {taken}: is a file, not a folder; expected a folder for the submission zips")
    assert taken.read_text() == "mine\n"


def test_emoji_codes_in_a_path_print_as_written(tmp_path, invoke):
    reg = tmp_path / ":smile:" / "reg"
    refused(invoke("list", "--registry", reg), f"{reg}: no registry here")


@pytest.mark.parametrize("extra", [("--device", "cpu"), ("--task", "sst"), ("--precision", "bf16"), ("--compile",)])
def test_predict_options_of_input_only_are_refused_without_it(tmp_path, invoke, registry_with_imports, extra):
    reg = registry_with_imports
    assert invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "0").exit_code == 0
    r = invoke("predict", "--data", SAMPLE, "--registry", reg, "--out", tmp_path / "out", *extra)
    refused(r, f"{extra[0]}: only with --input")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["tasks"]["sst"]["weights"].update({next(iter(d["tasks"]["sst"]["weights"])): "abc"}),
     "tasks.sst.weights."),
    (lambda d: d["tasks"].update(bogus=d["tasks"]["sst"]), "tasks.bogus (a key): expected 'sst', 'para' or 'sts'"),
    (lambda d: d.pop("tasks"), "tasks: missing (a required field)"),
])
def test_a_hand_edited_ensemble_file(tmp_path, invoke, registry_with_imports, edit, message):
    import json

    reg = registry_with_imports
    assert invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "0", "--name", "e").exit_code == 0
    assert invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "0", "--name", "f").exit_code == 0
    f = reg / "ensembles" / "e.json"
    doc = json.loads(f.read_text())
    edit(doc)
    f.write_text(json.dumps(doc))
    refused(invoke("predict", "--data", SAMPLE, "--registry", reg, "--ensemble", "e", "--out", tmp_path / "o"),
            f"{f}: {message}")
    refused(invoke("ensembles", "show", "e", "--registry", reg), f"{f}: {message}")
    r = invoke("ensembles", "list", "--registry", reg, "--json")   # the damaged one is named and left out
    assert r.exit_code == 0 and f"{f}: {message}" in r.output and "left out" in r.output
    assert [row["name"] for row in json.loads(r.stdout)] == ["f"]


@pytest.mark.parametrize("name", ["", ".e", "../e"])
def test_select_refuses_a_name_that_names_no_plain_file(tmp_path, invoke, registry_with_imports, name):
    r = invoke("select", "--data", SAMPLE, "--registry", registry_with_imports, "--repeats", "0", "--name", name)
    refused(r, f"ensemble name {name!r}: expected a plain file name")
    assert not any((registry_with_imports / "ensembles").iterdir())


def test_train_refuses_a_missing_test_file_before_training(tmp_path, invoke, tiny_base_dir):
    data = data_copy(tmp_path)
    (data / "sts-test-student.csv").unlink()
    r = invoke("train", "--data", data, "--base", tiny_base_dir, "--epochs", "1", "--tasks", "sts",
               "--registry", tmp_path / "reg", "--device", "cpu")
    refused(r, "sts-test-student.csv: input file not found for task 'sts', split 'test'")
    assert not (tmp_path / "reg" / "candidates").exists() or not any((tmp_path / "reg" / "candidates").iterdir())


MARKUP = "[bold red]x[/] :smile: [/]"


def test_names_and_paths_with_rich_markup_print_as_written(tmp_path, invoke, fake_predictions):
    reg = tmp_path / "[red]r[/red]"
    preds = fake_predictions(tmp_path / "p", QUALITY, seed=0)
    r = invoke("register", "--predictions", preds, "--name", MARKUP, "--data", SAMPLE, "--registry", reg)
    assert r.exit_code == 0 and f"({MARKUP})" in r.output, r.output
    (cid,) = [p.name for p in (reg / "candidates").iterdir()]
    r = invoke("list", "--registry", reg)
    assert r.exit_code == 0 and f"1 candidate in {reg}" in r.output, r.output   # a table title is plain text
    r = invoke("show", cid, "--registry", reg)
    assert r.exit_code == 0 and MARKUP in r.output and str(reg) in r.output, r.output
    r = invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "0", "--name", "[b]e[i]")
    assert r.exit_code == 0 and "saved ensemble [b]e[i] to" in r.output, r.output
    r = invoke("predict", "--data", SAMPLE, "--registry", reg, "--out", tmp_path / "[x]out")
    assert r.exit_code == 0 and "ensemble: [b]e[i]" in r.output and "wrote " + str(tmp_path / "[x]out") in r.output
    for args in (("ensembles", "list"), ("ensembles", "show", "[b]e[i]"), ("ensembles", "remove", "[b]e[i]", "--yes"),
                 ("remove", cid, "--yes")):
        r = invoke(*args, "--registry", reg)
        assert r.exit_code == 0 and "Traceback" not in r.output, r.output
        assert args[0] == "remove" or "[b]e[i]" in r.output, r.output
    assert f"removed {cid} ({MARKUP})" in r.output
