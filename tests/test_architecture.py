"""The package's layout rule (docs: design/architecture): rooms in flow order (``ensemble.FLOW``),
each importing only rooms above it; inside a wing, files in the order its ``__init__`` names
(``FILES``), each importing only files before it; only ``cli/`` imports typer and rich; the rooms
that parsing, selection and the leaderboard load never import torch. Read from the source (every
import, lazy ones inside functions too), so a new import that breaks a rule fails here."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import ensemble

PACKAGE = Path(ensemble.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))
WINGS = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
UI_LIBRARIES = ("typer", "rich", "click")
TORCH = ("torch", "transformers")
# never import torch, not even inside a function: the foundation, every configuration module, and the
# wings that see arrays, JSON and text only
NEVER_TORCH = ("errors", "tasks", "files", "documents", "progress", "data", "predfile", "metrics", "modeling.config",
               "training.config", "training.schedule", "training.loop_state", "registry.manifest", "registry.candidate",
               "registry.saved", "registry.recovery", "registry.ensembles", "registry.store", "registry.home",
               "registry.runs", "registry.logged", "selection", "soup.recipes", "soup.groups", "soup.path", "soup.honest", "leaderboard",
               "report")
# may import torch inside the functions that need it, never on import: what --help, select, list,
# parsing a grid, run --dry-run and the Ray driver load
LOAD_WITHOUT_TORCH = NEVER_TORCH + ("registry.register", "registry.keeper", "registry.adapter", "workflow", "scale.grid",
                                    "scale.driver", "runner", "search.space", "search.study", "search.trials", "soup.build",
                                    "cli")
MAX_TOP_MODULES = 12


def module_of(path: Path) -> str:
    """``ensemble/registry/store.py`` -> ``registry.store``; ``ensemble/registry/__init__.py`` -> ``registry``."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room_of(module: str) -> str:
    return module.split(".")[0]


def imports(path: Path, text: str | None = None, top_only: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file (``top_only``: those run on import,
    not inside a function). ``from . import x`` gives ``package.x``."""
    rel = path.relative_to(PACKAGE).with_suffix("")
    package = ["ensemble", *rel.parts[:-1]]
    tree = ast.parse(path.read_text() if text is None else text)
    nodes = ast.walk(tree)
    if top_only:
        nodes = [n for n in _top_level(tree)]
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level:
                name = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            if node.module is None or name == "ensemble":
                out.extend((node.lineno, f"{name}.{a.name}") for a in node.names)
            else:
                out.append((node.lineno, name))
    return out


def _top_level(tree: ast.AST):
    """The nodes that run when the module is imported (not inside functions, nor under TYPE_CHECKING)."""
    todo = list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def _inner(name: str) -> str | None:
    """``ensemble.registry.store.Registry`` -> ``registry.store`` (the module part), else None."""
    parts = name.split(".")
    if parts[0] != "ensemble" or len(parts) < 2:
        return None
    known = {module_of(p) for p in SOURCES}
    for k in range(len(parts) - 1, 0, -1):
        if ".".join(parts[1:k + 1]) in known:
            return ".".join(parts[1:k + 1])
    return None


def _files_of(wing: str) -> tuple[str, ...]:
    return importlib.import_module(f"ensemble.{wing}").FILES


def test_the_top_level_is_small_and_every_room_is_in_the_flow():
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert len(top) <= MAX_TOP_MODULES, f"{len(top)} modules at the top of the package (at most {MAX_TOP_MODULES}): {top}"
    rooms = set(top) | set(WINGS)
    assert rooms == set(ensemble.FLOW), f"rooms not in ensemble.FLOW: {sorted(rooms - set(ensemble.FLOW))}; " \
                                        f"in FLOW but absent: {sorted(set(ensemble.FLOW) - rooms)}"


@pytest.mark.parametrize("wing", WINGS)
def test_each_wing_names_its_files_in_order(wing):
    """The wing's ``FILES`` are its files, and its docstring names each of them in that order."""
    init = PACKAGE / wing / "__init__.py"
    files = _files_of(wing)
    assert set(files) == {p.stem for p in (PACKAGE / wing).glob("*.py")} - {"__init__"}
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    at = [doc.find(f"\n``{f}``") for f in files]   # the entries of its list of files
    assert -1 not in at, f"{wing}/__init__.py's docstring does not name {[f for f, a in zip(files, at) if a < 0]}"
    assert at == sorted(at), f"{wing}/__init__.py's docstring names its files out of FILES' order"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path):
    """Between rooms: only rooms before this one. Inside a wing: only files before this one."""
    me = module_of(path)
    room = room_of(me)
    bad = []
    for line, name in imports(path):
        target = _inner(name)
        if target is None or target == me or path.name == "__init__.py" and target.startswith(me):
            continue
        if room_of(target) != room:
            if ensemble.FLOW.index(room_of(target)) >= ensemble.FLOW.index(room):
                bad.append(f"line {line}: {name} (room {room_of(target)} is not above {room})")
        elif "." in me and "." in target:
            files = _files_of(room)
            if files.index(target.split(".")[1]) >= files.index(me.split(".")[1]):
                bad.append(f"line {line}: {name} (not before {me} in {room}.FILES)")
        elif "." in me:
            bad.append(f"line {line}: {name} (a file imports its own wing's __init__)")
    assert not bad, f"{path.relative_to(PACKAGE)} imports against the flow: {bad}"


def _in(module: str, rooms: tuple[str, ...]) -> bool:
    return any(module == r or module.startswith(r + ".") for r in rooms)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_torch_and_ui_libraries_only_where_allowed(path):
    me = module_of(path)
    roots = {(line, name.split(".")[0]) for line, name in imports(path)}
    if room_of(me) != "cli":
        assert not [r for r in roots if r[1] in UI_LIBRARIES], f"{path}: typer/rich outside cli/"
    if _in(me, NEVER_TORCH):
        assert not [r for r in roots if r[1] in TORCH], f"{path}: torch in a torch-free room"


def _loads(module: str, seen: set[str]) -> set[str]:
    """Every module and library that importing ``module`` loads (top-level imports, followed)."""
    if module in seen:
        return set()
    seen.add(module)
    path = PACKAGE / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = PACKAGE / module.replace(".", "/") / "__init__.py"
    out = set()
    for _, name in imports(path, top_only=True):
        inner = _inner(name)
        if inner is None:
            out.add(name.split(".")[0])
            continue
        chain = inner.split(".")
        for k in range(1, len(chain) + 1):      # a package's __init__ runs before its module
            out |= {".".join(chain[:k])} | _loads(".".join(chain[:k]), seen)
    return out


@pytest.mark.parametrize("path", [p for p in SOURCES if _in(module_of(p), LOAD_WITHOUT_TORCH)],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_torch_free_rooms_do_not_load_torch(path):
    loaded = _loads(module_of(path), set())
    assert not set(TORCH) & loaded, f"importing {module_of(path)} loads torch through " \
                                    f"{sorted(m for m in loaded if not _in(m, LOAD_WITHOUT_TORCH) and '.' in m)}"


def test_the_rule_reads_what_it_claims():
    """The checks above are not vacuous: relative, lazy and package imports resolve to modules."""
    assert imports(PACKAGE / "metrics.py", "from .selection import select\n") == [(1, "ensemble.selection")]
    assert imports(PACKAGE / "selection" / "greedy.py", "from ..training.finetune import x\nfrom . import pool\n") == [
        (1, "ensemble.training.finetune"), (2, "ensemble.selection.pool")]
    assert _inner("ensemble.registry.store.Registry") == "registry.store"
    lazy = "def f():\n    import torch\n"
    assert imports(PACKAGE / "cli" / "app.py", lazy) == [(2, "torch")]
    assert imports(PACKAGE / "cli" / "app.py", lazy, top_only=True) == []
    assert "torch" in _loads("training.finetune", set())
    assert "torch" not in _loads("training.config", set())
