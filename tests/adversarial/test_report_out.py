"""``report --out`` once replaced files in an existing ``<name>_files`` folder and wrote through a
symlinked one. Now it writes its figures only into a folder it made or its own earlier output (a
real folder of figure PNGs): anything else is refused before anything is written."""
from __future__ import annotations

import pytest

from analysis_cases import sst_registry
from ensemble.errors import EnsembleError
from ensemble.report import page as report


def test_a_symlinked_files_folder_is_never_written_through(tmp_path):
    reg, data, _ = sst_registry(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "selection-sst.png").write_bytes(b"mine")
    (tmp_path / "page_files").symlink_to(elsewhere)
    with pytest.raises(EnsembleError, match="page_files: a symlink"):
        report.report(reg, data, tmp_path / "page.html", "g")
    assert [p.name for p in elsewhere.iterdir()] == ["selection-sst.png"]
    assert (elsewhere / "selection-sst.png").read_bytes() == b"mine"
    assert not (tmp_path / "page.html").exists()


def test_a_foreign_files_folder_is_left_alone(tmp_path):
    reg, data, _ = sst_registry(tmp_path)
    folder = tmp_path / "page_files"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    (folder / "selection-sst.png").write_bytes(b"my picture")
    with pytest.raises(EnsembleError, match="holds 'notes.txt', which `ensemble report` did not write"):
        report.report(reg, data, tmp_path / "page.html", "g")
    assert (folder / "selection-sst.png").read_bytes() == b"my picture"
    assert not (tmp_path / "page.html").exists()


def test_its_own_earlier_output_is_replaced(tmp_path):
    reg, data, _ = sst_registry(tmp_path)
    first = report.report(reg, data, tmp_path / "page.html", "g")
    again = report.report(reg, data, tmp_path / "page.html", "g")
    assert again["figures"] == first["figures"]
