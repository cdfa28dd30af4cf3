"""The README stays a front page: at most 12 KB, its commands the ones CI runs, and every link it
makes into docs/ leads to a page (and a heading) that exists."""
from __future__ import annotations

import re

from docs_helpers import ROOT, load_generator

README = ROOT / "README.md"
LIMIT = 12 * 1024
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_readme_is_at_most_12_kb():
    size = len(README.read_bytes())
    assert size <= LIMIT, f"README.md is {size:,} bytes; at most {LIMIT:,} (move the detail into docs/)"


def test_every_link_into_docs_exists():
    slug = load_generator().slug
    links = [m for m in LINK.findall(README.read_text()) if m.startswith("docs/")]
    assert len(links) >= 10
    for link in links:
        path, _, anchor = link.partition("#")
        assert (ROOT / path).is_file(), f"README.md links to {path}, which does not exist"
        if anchor:
            headings = [slug(h) for h in re.findall(r"^#+ (.+)$", (ROOT / path).read_text(), re.M)]
            assert anchor in headings, f"README.md links to {link}: no such heading"


def test_the_readme_s_two_commands_are_what_ci_runs():
    readme, ci = README.read_text(), (ROOT / ".ci" / "run").read_text()
    assert "```bash\nbash install.sh\n```" in readme
    test_command = ".venv/bin/python -m pytest -n 2 tests"
    assert f"```bash\n{test_command}\n```" in readme and test_command in ci
    assert "bash install.sh" in ci and '-m "not slow"' in readme
