"""analyze and report from the command line: the packaged sample (marked), one task only, imported
predictions only, trained runs, narrow terminals, --json, and the errors."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.data import PACKAGE_SAMPLE as SAMPLE

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _select(invoke, reg, *args):
    r = invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "1", *args)
    assert r.exit_code == 0, r.output


def _at(columns: int, *args) -> str:
    r = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns), "TTY_COMPATIBLE": None,
                                                             "FORCE_COLOR": None}, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return ANSI.sub("", r.stdout)


def test_analyze_the_sample_as_json_and_as_tables(registry_with_imports, invoke):
    reg = registry_with_imports
    _select(invoke, reg, "--mode", "greedy")
    r = invoke("analyze", "--registry", reg, "--data", SAMPLE, "--json")
    assert r.exit_code == 0, r.output
    view = json.loads(r.stdout)
    assert view["sample"] is True and view["ensemble"] == "ensemble-greedy" and list(view["tasks"]) == ["sst", "para", "sts"]
    sst = view["tasks"]["sst"]
    assert sum(map(sum, sst["ensemble"]["confusion"])) == sst["rows"] == 24
    r = invoke("analyze", "--registry", reg, "--data", SAMPLE)
    assert r.exit_code == 0, r.output
    assert "SAMPLE DATA: the packaged sample (not course data); scores mean nothing." in r.stderr
    text = r.stdout
    for title in ("sst (SAMPLE DATA): ensemble, confusion (rows: gold, columns: predicted)",
                  "sst (SAMPLE DATA): how far off the errors are",
                  "para (SAMPLE DATA): accuracy by predicted-probability band (calibration)",
                  "sts (SAMPLE DATA): by gold-score band"):
        assert title in " ".join(text.split()), title
    assert f"fixes {sst['fixes']} rows and breaks {sst['breaks']}" in text


def test_tables_fit_a_narrow_terminal_and_never_cut_a_number(registry_with_imports, invoke):
    reg = registry_with_imports
    _select(invoke, reg, "--mode", "caruana", "--tasks", "sts")
    view = json.loads(invoke("analyze", "--registry", reg, "--data", SAMPLE, "--json", "--worst", "3").stdout)
    text = _at(72, "analyze", "--registry", reg, "--data", SAMPLE, "--worst", "3")
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 72
    for row in view["tasks"]["sts"]["worst"]:
        assert f"{row['ensemble']:.2f}" in text and f"{row['gold']:.2f}" in text
    narrow = _at(40, "analyze", "--registry", reg, "--data", SAMPLE, "--worst", "3")
    assert "left out to fit 40 columns" in " ".join(narrow.split())
    for band in view["tasks"]["sts"]["ensemble"]["bands"]:
        if band["mean_abs_error"] is not None:
            assert f"{band['mean_abs_error']:.4f}" in narrow     # whole, however narrow


def test_one_task_and_the_worst_rows_with_every_member(registry_with_imports, invoke):
    reg = registry_with_imports
    _select(invoke, reg, "--mode", "caruana", "--tasks", "sts")
    r = invoke("analyze", "--registry", reg, "--data", SAMPLE, "--task", "sts", "--worst", "2", "--json")
    assert r.exit_code == 0, r.output
    sts = json.loads(r.stdout)["tasks"]["sts"]
    assert len(sts["worst"]) == 2 and all(set(w["members"]) == set(sts["members"]) for w in sts["worst"])
    errors = [abs(w["ensemble"] - w["gold"]) for w in sts["worst"]]
    assert errors == sorted(errors, reverse=True)


def test_errors_name_what_is_missing(registry_with_imports, invoke):
    reg = registry_with_imports
    r = invoke("analyze", "--registry", reg, "--data", SAMPLE)
    assert r.exit_code == 1 and "no selected ensemble" in r.stderr and "run `ensemble select` first" in r.stderr
    _select(invoke, reg, "--tasks", "sts", "--name", "only-sts")
    r = invoke("analyze", "--registry", reg, "--data", SAMPLE, "--ensemble", "nope")
    assert r.exit_code == 1 and "no ensemble 'nope'" in r.stderr
    r = invoke("analyze", "--registry", reg, "--data", SAMPLE, "--task", "para")
    assert r.exit_code == 1 and "ensemble only-sts has no members for para (it has sts)" in r.stderr
    r = invoke("report", "--registry", reg, "--data", SAMPLE, "--task", "para", "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["error"].startswith("ensemble only-sts has no members for para")


def test_report_of_imported_predictions_on_the_sample(registry_with_imports, invoke, tmp_path):
    reg = registry_with_imports
    _select(invoke, reg)
    out = tmp_path / "site" / "report.html"
    r = invoke("report", "--registry", reg, "--data", SAMPLE, "--out", out)
    assert r.exit_code == 0, r.output
    assert f"wrote {out} (" in r.stdout and "0 training runs) (SAMPLE DATA)" in r.stdout
    page = out.read_text()
    pngs = sorted((tmp_path / "site" / "report_files").glob("*.png"))
    assert page.count("<img ") == len(pngs) >= 5 and "SAMPLE DATA" in page
    assert all(f"wrote {p}" in r.stdout for p in pngs)


def test_report_of_trained_runs_plots_the_hyperparameters_that_vary(mixed_registry, invoke, tmp_path):
    """Two trained runs (lr, seed, architecture and SMART weight differ) and an import; no run
    records: the curves come from the candidates' manifests."""
    reg = tmp_path / "reg"
    shutil.copytree(mixed_registry, reg)
    _select(invoke, reg)
    r = invoke("report", "--registry", reg, "--data", SAMPLE, "--out", tmp_path / "r.html", "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    names = [p.rsplit("/", 1)[1][:-4] for p in result["figures"]]
    assert result["runs"] == 2
    assert names[-5:] == ["learning-curves", "dev-vs-lr", "dev-vs-smart_weight", "dev-vs-architecture", "dev-vs-seed"]
    assert (tmp_path / "r.html").read_text().count("<img ") == len(names)


def test_analyze_loads_neither_torch_nor_matplotlib(registry_with_imports, invoke):
    import subprocess
    import sys

    _select(invoke, registry_with_imports, "--tasks", "sst")
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom ensemble.cli import app\n"
            f"r = CliRunner().invoke(app, ['analyze', '--registry', {str(registry_with_imports)!r}, '--data', "
            f"{str(SAMPLE)!r}, '--json'])\nassert r.exit_code == 0, r.output\n"
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    import ensemble

    root = str(Path(ensemble.__file__).parents[1])    # this tree's package, not an installed one
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=root,
                         env={**os.environ, "PYTHONPATH": root})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
