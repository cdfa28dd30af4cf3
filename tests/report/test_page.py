"""report: the training runs behind a registry (records, or manifests where there are none), the
varying hyperparameters, and the page: every figure embedded and written as PNG, nothing outside it."""
from __future__ import annotations

import base64
import re

import pytest

from analysis_cases import sst_registry
from ensemble.report import page as report
from ensemble.errors import EnsembleError

DATA_URI = re.compile(r'data:image/png;base64,[A-Za-z0-9+/=]+')
WITH_RUNS = ["selection-sst", "confusion-sst", "correlation-sst", "learning-curves", "dev-vs-lr",
             "dev-vs-architecture", "dev-vs-seed"]


def offline_problems(page: str) -> list[str]:
    """Every reference a page makes outside itself (data: URIs taken out first: base64 holds '/')."""
    rest = DATA_URI.sub("", page)
    bad = [p for p in ("http:", "https:", "//", "<script", "<link", "@import", "url(", "<iframe", "<object", "<embed")
           if p in rest.lower()]
    bad += [f"src={m}" for m in re.findall(r'src="([^"]*)"', page) if not m.startswith("data:image/png;base64,")]
    bad += [f"href={m}" for m in re.findall(r'href="([^"]*)"', page)]
    return bad


def test_runs_from_records_with_their_kept_epochs(tmp_path):
    reg, _, ids = sst_registry(tmp_path)
    runs = report.training_runs(reg.root, reg.candidates())
    assert [(r["run_id"], r["name"], r["source"]) for r in runs] == [("r1", "multi-sst-s0", "run record"),
                                                                      ("r2", "cerberus-2-sst-s1", "run record")]
    assert runs[0]["epochs"] == {"sst": [(1, 0.5), (2, 4 / 6)]} and runs[0]["kept"] == {"sst": [(2, 4 / 6)]}
    assert runs[1]["epochs"] == {"sst": [(1, 0.5), (2, 0.4), (3, 0.3)]}
    assert runs[1]["kept"] == {"sst": []}             # its candidate is gone from the registry


def test_runs_from_manifests_where_no_record_exists(tmp_path):
    reg, _, ids = sst_registry(tmp_path, runs=False)
    assert report.training_runs(reg.root, reg.candidates()) == []      # imported predictions: no run
    config = {"lr": 2e-5, "seed": 4, "architecture": "triple"}
    reg.update_manifest(ids["B"], lambda m: m.update(training={"run_id": "old", "epoch": 3, "config": config}))
    runs = report.training_runs(reg.root, reg.candidates())
    assert runs == [{"run_id": "old", "name": "B", "config": config, "epochs": {"sst": [(3, 0.5)]},
                     "kept": {"sst": [(3, 0.5)]}, "source": "candidates' manifests"}]


def test_only_hyperparameters_that_vary_are_plotted(tmp_path):
    reg, _, _ = sst_registry(tmp_path)
    points = report.hyper_points(report.training_runs(reg.root, reg.candidates()))
    assert list(points) == ["lr", "architecture", "seed"]          # smart_weight and layer_decay are the same
    assert points["lr"] == {"sst": [(1e-5, 4 / 6, "multi-sst-s0"), (3e-5, 0.5, "cerberus-2-sst-s1")]}
    assert [v for v, _, _ in points["architecture"]["sst"]] == ["multi", "cerberus-2"]


def test_the_page_holds_every_figure_and_nothing_outside_it(tmp_path):
    reg, data, _ = sst_registry(tmp_path)
    out = tmp_path / "out" / "page.html"
    result = report.report(reg, data, out, "g")
    folder = tmp_path / "out" / "page_files"
    assert result["figures"] == [str(folder / f"{n}.png") for n in WITH_RUNS]
    page = out.read_text()
    assert page.count("<img ") == len(WITH_RUNS)
    embedded = re.findall(r'<figure id="([^"]+)"><img src="data:image/png;base64,([^"]+)"', page)
    assert [n for n, _ in embedded] == WITH_RUNS
    for name, b64 in embedded:
        assert base64.b64decode(b64) == (folder / f"{name}.png").read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.png" for n in WITH_RUNS)   # no temp files left
    assert offline_problems(page) == []
    assert "<h2>Summary</h2><table><tr><th>system</th>" in page.replace("\n", "")
    assert "greedy ensemble (sst 2 members)" in page
    assert "the ensemble fixes 2 rows and breaks 1" in page
    assert '<tr><td>class 0</td><td class="n">1</td><td class="n">0.0000</td><td class="n">1.0000</td></tr>' in page
    assert '<tr><td>off by 1</td><td class="n">-</td><td class="n">1</td><td class="n">2</td></tr>' in page


def test_offline_check_finds_what_it_looks_for():
    """The check above can fail: each kind of outside reference is caught."""
    assert offline_problems('<img src="https://x.org/a.png">') == ["https:", "//", "src=https://x.org/a.png"]
    assert offline_problems('<link href="a.css">') == ["<link", "href=a.css"]
    assert offline_problems('<script>1</script>') == ["<script"]
    assert offline_problems('<img src="data:image/png;base64,ab//cd==">') == []


def test_imported_predictions_only_give_a_page_without_training_figures(tmp_path):
    reg, data, _ = sst_registry(tmp_path, runs=False)
    result = report.report(reg, data, tmp_path / "r.html")
    assert [p.rsplit("/", 1)[1] for p in result["figures"]] == ["selection-sst.png", "confusion-sst.png",
                                                                "correlation-sst.png"]
    page = (tmp_path / "r.html").read_text()
    assert page.count("<img ") == 3 and "No training runs in this registry (imported predictions only)." in page


def test_text_is_escaped(tmp_path):
    reg, data, ids = sst_registry(tmp_path, runs=False)
    reg.update_manifest(ids["A"], lambda m: m.update(name='<b>"A" & co</b>'))
    page = report.report(reg, data, tmp_path / "r.html")["report"]
    text = (tmp_path / "r.html").read_text()
    assert "&lt;b&gt;&quot;A&quot; &amp; co&lt;/b&gt;" in text and "<b>" not in text and page.endswith("r.html")


def test_out_naming_a_folder_is_refused(tmp_path):
    reg, data, _ = sst_registry(tmp_path, runs=False)
    (tmp_path / "dir").mkdir()
    with pytest.raises(EnsembleError, match=r"--out .*dir: is a folder; expected the HTML file to write"):
        report.report(reg, data, tmp_path / "dir")


def test_an_existing_file_is_replaced_only_when_it_is_an_earlier_report(tmp_path):
    reg, data, _ = sst_registry(tmp_path, runs=False)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    with pytest.raises(EnsembleError, match=r"--out .*notes.txt: exists and is not a page `ensemble report` wrote"):
        report.report(reg, data, notes)
    assert notes.read_text() == "my notes\n" and not (tmp_path / "notes_files").exists()
    first = report.report(reg, data, tmp_path / "r.html")["report"]
    again = report.report(reg, data, tmp_path / "r.html")["report"]      # its own page: replaced
    assert first == again and (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")


def test_a_schedule_varying_across_runs_is_plotted_older_records_counted_as_constant():
    runs = [{"name": "a", "config": {"lr": 1e-5}, "epochs": {"sst": [(1, 0.4), (2, 0.5)]}},
            {"name": "b", "config": {"lr": 1e-5, "schedule": "cosine", "warmup": 0.1}, "epochs": {"sst": [(1, 0.6)]}}]
    points = report.hyper_points(runs)
    assert list(points) == ["schedule", "warmup"]
    assert points["schedule"] == {"sst": [("constant", 0.5, "a"), ("cosine", 0.6, "b")]}
    assert points["warmup"] == {"sst": [(0.0, 0.5, "a"), (0.1, 0.6, "b")]}


def test_the_defaults_of_later_options_are_the_training_configurations():
    from ensemble.training.config import LATER_FIELDS
    assert report.LATER_DEFAULTS.items() <= LATER_FIELDS.items()
