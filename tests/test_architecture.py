"""The package's layout rule (README "Architecture"): rooms in flow order, each importing only rooms
above it; no core room imports bench/ or cli/; only cli/ imports typer and rich; the rooms that
``select``, ``list`` and ``validate`` load never import torch. Read from the source, so a new
import that breaks the rule fails here."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ensemble

PACKAGE = Path(ensemble.__file__).parent

# Flow order: files -> examples -> token batches -> model -> training -> registry -> selection ->
# leaderboard files -> CLI. A room may import only rooms before it.
FLOW = (
    "errors", "tasks", "files", "progress", "data", "predfile", "metrics", "batches", "bases", "model",
    "smart", "kernels", "infer", "schedule", "train_config", "checkpoint", "train", "mlm", "mlm_files", "pretrain",
    "manifest", "candidate", "ensemble_file", "recovery", "registry",
    "runs", "register", "keeper", "grid", "selection", "validate", "leaderboard", "submission", "saved", "workflow",
    "ray_worker", "ray_engine", "runner",
    "analysis", "figures", "report", "bench", "cli", "__main__",
)
NO_TORCH = ("errors", "tasks", "files", "progress", "schedule", "data", "predfile", "metrics", "manifest", "candidate",
            "ensemble_file", "recovery", "registry",
            "runs", "selection", "validate", "leaderboard", "submission", "saved", "analysis", "figures", "report")
UI_LIBRARIES = ("typer", "rich", "click")


def room_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imports(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, top-level or inside functions."""
    rel = path.relative_to(PACKAGE).with_suffix("")
    package = ["ensemble", *rel.parts[:-1]]
    out = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text)):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:      # from . import x
                    out.extend((node.lineno, f"{name}.{a.name}") for a in node.names)
                    continue
                out.append((node.lineno, name))
            else:
                out.append((node.lineno, node.module))
    return out


SOURCES = sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_room_is_in_the_flow():
    rooms = {room_of(p) for p in SOURCES} - {"__init__"}
    assert rooms <= set(FLOW), f"rooms missing from FLOW (add them in their place): {sorted(rooms - set(FLOW))}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path):
    room = room_of(path)
    if room == "__init__":
        return
    bad = []
    for line, name in imports(path):
        parts = name.split(".")
        if parts[0] != "ensemble" or len(parts) < 2:
            continue
        target = parts[1]
        if target == room:
            continue
        if FLOW.index(target) >= FLOW.index(room):
            bad.append(f"line {line}: {name}")
    assert not bad, f"{path.name} ({room}) imports rooms at or below it: {bad}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_torch_and_ui_libraries_only_where_allowed(path):
    room = room_of(path)
    roots = {(line, name.split(".")[0]) for line, name in imports(path)}
    if room != "cli":
        assert not [r for r in roots if r[1] in UI_LIBRARIES], f"{path}: typer/rich outside cli/"
    if room in NO_TORCH:
        assert not [r for r in roots if r[1] in ("torch", "transformers")], f"{path}: torch in a torch-free room"


def test_relative_imports_are_resolved_to_rooms():
    """The checks above are not vacuous: relative imports resolve to the rooms they name."""
    assert imports(PACKAGE / "metrics.py", "from .selection import select\n") == [(1, "ensemble.selection")]
    assert imports(PACKAGE / "selection" / "greedy.py", "from ..train import x\nfrom . import pool\n") == [
        (1, "ensemble.training.finetune"), (2, "ensemble.selection.pool")]
    assert imports(PACKAGE / "cli" / "app.py", "import torch\n") == [(1, "torch")]
