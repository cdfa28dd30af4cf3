"""MkDocs hooks (``hooks:`` in mkdocs.yml).

``docs/guides/`` is open: any page there that the nav does not list joins the "Guides" section,
after the listed ones, in file-name order, titled by its first heading. So a guide is added by
writing its file, and the nav never names a page that does not exist.
"""
from __future__ import annotations

import re
from pathlib import Path

GUIDES_SECTION = "Guides"
GUIDES_DIR = "guides"


def _listed(nav) -> set[str]:
    out = set()
    for item in nav or []:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            out |= _listed(value)
        elif isinstance(value, str):
            out.add(value)
    return out


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"#\s+(.+?)\s*#*\s*$", line)
        if m:
            return m.group(1)
    return path.stem.replace("-", " ").capitalize()


def on_config(config, **kwargs):
    docs = Path(config["docs_dir"])
    listed = _listed(config["nav"])
    extra = [p for p in sorted((docs / GUIDES_DIR).glob("*.md"))
             if f"{GUIDES_DIR}/{p.name}" not in listed]
    if not extra:
        return config
    for item in config["nav"]:
        if isinstance(item, dict) and GUIDES_SECTION in item:
            item[GUIDES_SECTION].extend({_title(p): f"{GUIDES_DIR}/{p.name}"} for p in extra)
            break
    else:
        config["nav"].append({GUIDES_SECTION: [{_title(p): f"{GUIDES_DIR}/{p.name}"} for p in extra]})
    return config
