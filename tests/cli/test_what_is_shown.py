"""What the tool shows (issue 27): a log axis labelled at the rates tried, ambiguous prefixes said
as such, `1 candidate`, an empty `submissions --json`, the metric of `predict --input`, the reason
of a plain select, designed summaries (`ensembles show`, `show CANDIDATE`, `pretrain`), `select`
keeping a saved ensemble of another mode, and a submission's file name never folded."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.cli import select as select_cli
from ensemble.cli import train as train_cli
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.report import figures


def _run(*args, columns: int = 80):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)})


def test_a_log_axis_under_a_decade_is_labelled_at_the_rates_tried(monkeypatch):
    shown = {}
    monkeypatch.setattr(figures, "png", lambda fig: shown.setdefault("fig", fig) and b"")
    figures.hyperparameter("lr", {"sst": [(7e-5, 0.5, "a"), (8e-5, 0.6, "b"), (1e-4, 0.55, "c")]}, False)
    ax = shown["fig"].axes[0]
    shown["fig"].canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["7e-05", "8e-05", "0.0001"]
    assert all(t.get_text() == "" for t in ax.get_xticklabels(minor=True))


def test_one_candidate_is_singular_and_an_ambiguous_name_prefix_says_so(registry_with_imports):
    r = _run("list", "--registry", registry_with_imports, "--where", "name=ext0", columns=200)
    assert "1 candidate in " in r.stdout and "1 candidates" not in r.stdout
    r = _run("show", "ext", "--registry", registry_with_imports)
    assert r.exit_code == 1
    assert "error: ambiguous: 'ext' starts the names of 3 candidates (ext0 (" in r.stderr
    r = _run("show", "ext1", "--registry", registry_with_imports)
    assert r.exit_code == 0 and r.stdout.split()[1] == "ext1"


def test_submissions_json_on_no_folder_is_an_empty_list(tmp_path):
    r = _run("submissions", "--out", tmp_path / "none", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout) == []


def test_show_candidate_opens_with_a_summary_and_json_has_the_manifest(registry_with_imports):
    r = _run("show", "ext0", "--registry", registry_with_imports, columns=100)
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("dev: sst "))
    table = next(i for i, line in enumerate(lines) if "dev metrics and cached predictions" in line)
    assert first < table and "{" not in r.stdout
    doc = json.loads(_run("show", "ext0", "--json", "--registry", registry_with_imports).stdout)
    assert doc["name"] == "ext0"


def test_ensembles_show_is_a_summary_and_select_keeps_another_modes_ensemble(registry_with_imports):
    reg = registry_with_imports
    r0 = _run("select", "--data", SAMPLE, "--registry", reg, "--mode", "greedy")
    assert r0.exit_code == 0, r0.output
    r = _run("ensembles", "show", "ensemble-greedy", "--registry", reg, columns=200)
    assert r.exit_code == 0
    assert "{'" not in r.stdout and "(asked for)" not in r.stdout
    assert "held-out gain " in r.stdout and "submitted: ensemble" in r.stdout
    assert "reason: the ensemble is submitted (--system ensemble, select's default)" in r.stdout
    r = _run("select", "--data", SAMPLE, "--registry", reg, "--mode", "caruana", "--name", "ensemble-greedy")
    assert r.exit_code == 1
    assert ("error: a saved ensemble named 'ensemble-greedy' was made in mode greedy; selecting in mode caruana "
            "would replace it: give another --name, or --force to replace it") in r.stderr
    saved = json.loads((reg / "ensembles" / "ensemble-greedy.json").read_text())["created"]
    r = _run("select", "--data", SAMPLE, "--registry", reg, "--mode", "greedy", columns=300)   # a rerun: said
    assert r.exit_code == 0 and f"(replacing the one saved {saved})" in " ".join(r.stdout.split())
    r = _run("select", "--data", SAMPLE, "--registry", reg, "--mode", "caruana", "--name", "ensemble-greedy", "--force")
    assert r.exit_code == 0


def test_predict_input_names_its_metric(capsys):
    select_cli.print_predicted({"written": [], "score": 0.25, "metric": "pearson", "rows": 1500})
    assert capsys.readouterr().out == "pearson on the labelled input (1,500 rows): 0.2500\n"


def test_pretrain_ends_in_a_few_lines(capsys):
    train_cli.print_pretrained({"base": "minilm", "out": "mlm", "steps": 200, "steps_run": 200, "resumed_from": None,
                             "epochs": 1.5, "sequences": 1234, "tasks": ["sst", "para"], "seconds": 12.0,
                             "device": "cpu", "final_loss": 2.5, "perplexity_before": 30.0, "perplexity_after": 20.0,
                             "perplexity_texts": "dev"})
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("pretrained minilm -> mlm: 200 steps (200 now), 1.50 passes over 1,234")
    assert len(out.splitlines()) == 3 and "{" not in out


def test_a_submissions_file_name_is_never_folded(tmp_path, monkeypatch):
    name = "2026-12-08T04-00-00-ensemble-caruana-dev0.7712.zip"
    from ensemble.cli import submissions as mod
    monkeypatch.setattr(mod, "list_submissions", lambda out: [
        {"file": name, "created": "2026-12-08T04:00:00", "ensemble": "ensemble-caruana-with-a-long-name",
         "verified": True, "mean_dev": 0.7712, "message": "a long message about what changed " * 2, "damaged": None}])
    r = _run("submissions", "--out", tmp_path, columns=80)
    assert r.exit_code == 0 and name in r.stdout, r.stdout
