"""Housekeeping for a registry that grows: ``runs`` (the training runs), ``prune`` (candidates no
saved ensemble uses and no task ranks in its top K) and ``env`` (what a bug report needs)."""
from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import typer
from rich.markup import escape

from ..errors import EnsembleError
from ..registry.runs import read_runs
from ..registry.store import Registry
from ..tasks import TASKS
from .listing import human_size, size_on_disk
from .options import JsonOpt, RegistryOpt
from .render import console, err, plural, print_json, print_table
from .tables import Col


def runs(registry: RegistryOpt = Path("checkpoints"), as_json: JsonOpt = False) -> None:
    """The training runs in the registry, oldest first: status, epochs done, candidates (`ensemble show RUN` shows
    one run's epochs)."""
    reg = Registry(registry)
    if not reg.exists:
        raise EnsembleError(f"{registry}: no registry here (expected a folder made by `ensemble train` or "
                            "`ensemble register`)")
    records = sorted(read_runs(reg.root), key=lambda r: (str(r.get("started") or ""), str(r.get("run_id"))))
    if as_json:
        print_json(records, sort_keys=True)
        return
    if not records:
        console.print(f"no training runs in {escape(str(registry))} yet: `ensemble train` makes one")
        return
    rows = [[escape(str(r.get("run_id"))), escape(str(r.get("name") or "-")), escape(str(r.get("status") or "-")),
             str(len(r.get("epochs") or [])), str((r.get("config") or {}).get("epochs", "-")),
             escape(", ".join(r.get("candidates") or []) or "-"), escape(str(r.get("started") or "-")[:16])]
            for r in records]
    print_table(f"{plural(len(records), 'run')} in {registry}", [
        Col("run"), Col("name", floor=20), Col("status"), Col("epochs done", True), Col("of", True),
        Col("candidates", drop=1), Col("started", drop=2, floor=16)], rows)


def prune(top: int = typer.Option(..., "--top", help="Keep the K best candidates of each task by dev score."),
          registry: RegistryOpt = Path("checkpoints"),
          yes: bool = typer.Option(False, "--yes", "-y", help="Remove them (without it: only list them)."),
          as_json: JsonOpt = False) -> None:
    """Remove the candidates no saved ensemble uses and no task has in its top K by dev score; without --yes only
    list them (a dry run) and what they free."""
    if top < 1:
        raise EnsembleError(f"--top {top}: expected 1 or more")
    reg = Registry(registry)
    cands = reg.candidates()
    keep = set()
    for task in TASKS:
        ranked = sorted((c for c in cands if c.dev_metric(task) is not None), key=lambda c: -c.dev_metric(task))
        keep |= {c.id for c in ranked[:top]}
    used = {c.id for c in cands if reg.ensembles_naming(c.id)}
    gone = [c for c in cands if c.id not in keep | used]
    freed = sum(size_on_disk(c) for c in gone)
    if yes:
        for c in gone:
            reg.remove(c.id)
    if as_json:
        print_json({"removed" if yes else "would_remove": [c.id for c in gone], "bytes": freed,
                    "kept": len(cands) - len(gone)})
        return
    verb = "removed" if yes else "would remove"
    for c in gone:
        console.print(f"{verb} {c.id} ({escape(str(c.name))}, {human_size(size_on_disk(c))})")
    console.print(f"{verb} {plural(len(gone), 'candidate')} ({human_size(freed)}); kept {len(cands) - len(gone)}: "
                  f"the top {top} of each task and every member of a saved ensemble", highlight=False)
    if not yes:
        err.print("a dry run: nothing was removed (`--yes` removes them)", markup=False, highlight=False)


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def env(registry: RegistryOpt = Path("checkpoints"), as_json: JsonOpt = False) -> None:
    """Versions, device, paths, and the registry and data in use: paste it into a bug report."""
    from ..data import resolve_data

    try:
        data_dir, sample = resolve_data(None)
        data = f"{data_dir}{' (the packaged sample)' if sample else ''}"
    except EnsembleError as e:
        data = f"none ({e})"
    reg = Registry(registry)
    info = {"ensemble": _version("ensemble"), "python": sys.version.split()[0], "platform": platform.platform(),
            **{p: _version(p) for p in ("torch", "transformers", "numpy", "scipy", "typer", "rich", "ray")},
            "device": _device(), "cpus": os.cpu_count(), "executable": sys.executable, "cwd": os.getcwd(),
            "registry": f"{reg.root.resolve()}" + ("" if reg.exists else " (none yet)"), "data": data}
    if as_json:
        print_json(info)
        return
    for key, value in info.items():
        console.print(f"{key}: {escape(str(value))}", highlight=False)


def _device() -> str:
    """CUDA's device when torch sees one (torch is imported only when installed)."""
    try:
        import torch
    except ImportError:
        return "cpu (no torch)"
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()})"
    return "cpu"
