"""The documentation site builds with ``mkdocs build --strict`` (no warning: every link, anchor
and page in the nav), and the built pages render in a real browser. Both need the ``docs`` extra
(MkDocs, Material) and skip without it; the browser check skips without Debian's chromium."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from docs_helpers import ROOT
from headless import chromium

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs", reason="MkDocs is not installed (pip install -e '.[docs]')")
    pytest.importorskip("material", reason="mkdocs-material is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
                          "--site-dir", str(out)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    return out, run


def test_the_site_builds_strictly(site):
    out, run = site
    log = run.stdout + run.stderr
    assert run.returncode == 0, log
    assert "WARNING" not in log, log
    for page in ("index.html", "getting-started.html", "reference/cli.html", "design/architecture.html",
                 "design/guarantees.html", "performance.html", "limits.html"):
        assert (out / page).is_file(), page


def test_the_built_pages_render_in_chromium(site, tmp_path):
    out, run = site
    assert run.returncode == 0, run.stderr
    home = chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", (out / "index.html").as_uri())
    assert re.search(r"<title>\s*ensemble\s*</title>", home), home[:2000]
    assert "Why not the alternatives" in home
    cli = chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", (out / "reference" / "cli.html").as_uri())
    assert re.search(r"<title>\s*Command-line reference - ensemble\s*</title>", cli), cli[:2000]
    assert re.search(r'<h2 id="ensemble-train">ensemble train', cli)
    assert "multi+triple" in cli and "--architecture" in cli
