"""Registry commands: ``list``, ``show``, ``verify``, ``remove`` and ``register``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from .. import register as reg_mod
from ..data import resolve_data
from ..errors import EnsembleError
from ..registry import Registry
from ..tasks import TASKS
from .options import CompileOpt, DataOpt, DeviceOpt, JsonOpt, PrecisionOpt, RegistryOpt
from .progress import RichProgress
from .render import (candidate_row, console, print_candidate, print_candidates, print_json, print_refreshed,
                     print_registered, print_verify, sample_banner)


def list_(registry: RegistryOpt = Path("checkpoints"),
          sort: Optional[str] = typer.Option(None, help="Sort by a task's dev metric (sst, para, sts)."),
          as_json: JsonOpt = False) -> None:
    """The candidates in the registry."""
    cands = Registry(registry).candidates()
    if sort is not None and sort not in TASKS:
        raise EnsembleError(f"--sort {sort}: expected one of {', '.join(TASKS)}")
    if sort:
        cands.sort(key=lambda c: (c.dev_metric(sort) is None, -(c.dev_metric(sort) or 0.0), c.id))
    if as_json:
        print_json([candidate_row(c) for c in cands])
        return
    print_candidates(cands, registry)


def show(candidate: str = typer.Argument(..., help="Candidate id (or unique prefix, or name)."),
         registry: RegistryOpt = Path("checkpoints"), as_json: JsonOpt = False) -> None:
    """A candidate's config, metrics, files and hashes."""
    c = Registry(registry).get(candidate)
    if as_json:
        print_json(c.manifest, sort_keys=True)
        return
    print_candidate(c)


def verify(candidates: Optional[list[str]] = typer.Argument(None, help="Candidates to check (default: all)."),
           registry: RegistryOpt = Path("checkpoints"), as_json: JsonOpt = False) -> None:
    """Rehash every stored file; exit 1 naming each mismatched, missing or extra file."""
    checked, problems = Registry(registry).verify(candidates or None)
    if as_json:
        print_json({"checked": [c.id for c in checked], "problems": [p.__dict__ for p in problems]})
    else:
        print_verify(checked, problems)
    if problems:
        raise typer.Exit(1)


def remove(candidate: str, registry: RegistryOpt = Path("checkpoints"),
           yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask.")) -> None:
    """Delete a candidate from the registry."""
    reg = Registry(registry)
    c = reg.get(candidate)
    if not yes and not typer.confirm(f"remove candidate {c.id} ({c.name})?", default=False):
        console.print("kept")
        raise typer.Exit(1)
    reg.remove(c.id)
    console.print(f"removed {c.id} ({c.name})")


def register(
    paths: Optional[list[Path]] = typer.Argument(None, help="Candidate folders exported from another registry, or model folders."),
    data: DataOpt = None,
    predictions: Optional[Path] = typer.Option(None, help="Folder of <task>-<split>.csv prediction files from other code."),
    name: Optional[str] = typer.Option(None, help="Name shown in tables."),
    parameters: Optional[int] = typer.Option(None, help="--predictions: the model's parameter count, for the tables."),
    refresh: bool = typer.Option(False, "--refresh", help="Recompute the cached predictions of stale candidates."),
    force: bool = typer.Option(False, help="--refresh: recompute even when not stale (named candidates or all)."),
    candidates: Optional[list[str]] = typer.Option(None, "--candidate", "-c", help="--refresh: only these."),
    precision: PrecisionOpt = "fp32",
    compile: CompileOpt = False,
    device: DeviceOpt = "auto",
    registry: RegistryOpt = Path("checkpoints"),
) -> None:
    """Add a model (its dev and test predictions are computed now) or predictions made elsewhere."""
    data_dir, sample = resolve_data(data)
    sample_banner(sample)
    reg = Registry(registry)
    progress = RichProgress()
    if refresh:
        done = reg_mod.refresh(reg, data_dir, candidates, device=device, precision=precision, progress=progress,
                               force=force, compile=compile)
        progress.stop()
        print_refreshed(done)
        return
    if bool(paths) == (predictions is not None):
        raise EnsembleError("give either PATH... (models or exported candidates) or --predictions DIR --name NAME")
    if predictions is not None:
        if not name:
            raise EnsembleError("--predictions needs --name NAME")
        print_registered(reg_mod.register_predictions(reg, predictions, name, data_dir, parameters))
        return
    if name and len(paths) > 1:
        raise EnsembleError("--name applies to one PATH; several were given")
    register_models(reg, paths, data_dir, name, progress, device=device, precision=precision, compile=compile)


def register_models(reg: Registry, paths: list[Path], data_dir: Path, name: Optional[str], progress: RichProgress,
                    **run: Any) -> None:
    """Register model folders one at a time (one model in memory), printing each as it lands."""
    from ..infer import TokenCache  # lazy: keeps select/list/validate fast
    cache = TokenCache()   # each input file is tokenised once for all models sharing a tokenizer
    for path in paths:
        added = reg_mod.register_model(reg, path, data_dir, name, progress=progress, cache=cache, **run)
        progress.stop()
        print_registered(added)
