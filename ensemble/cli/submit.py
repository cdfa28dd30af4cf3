"""Leaderboard file commands: ``validate`` (check them against the data) and ``submit`` (zip them)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from ..data import resolve_data
from ..errors import EnsembleError
from ..registry import Registry
from ..leaderboard import score_dir
from ..submission import make_submission
from ..validate import format_problems, validate_dir
from .options import DataOpt, JsonOpt, RegistryOpt
from .render import console, print_json, print_validated


def validate(pred_dir: Path = typer.Argument(Path("predictions"), help="Folder of leaderboard files."),
             data: DataOpt = None, as_json: JsonOpt = False) -> None:
    """Check leaderboard files against the data: header, ids, duplicates, values. Exit 1 on any problem."""
    data_dir, _ = resolve_data(data)
    problems = validate_dir(pred_dir, data_dir)
    if as_json:
        print_json([p.__dict__ for p in problems])
    else:
        print_validated(problems, format_problems(problems), pred_dir, data_dir)
    if problems:
        raise typer.Exit(1)


def submit(predictions: Path = typer.Option(Path("predictions"), help="Folder of leaderboard files."),
           out: Path = typer.Option(Path("submissions"), help="Folder for the zip."),
           data: DataOpt = None,
           ensemble: Optional[str] = typer.Option(None, help="Ensemble the files came from (recorded in the manifest)."),
           include_source: Optional[Path] = typer.Option(None, help="Also zip this source tree's code, as the course zip does."),
           registry: RegistryOpt = Path("checkpoints")) -> None:
    """Validate, then zip the predictions with a manifest; never overwrites an earlier submission."""
    data_dir, sample = resolve_data(data)
    info: dict[str, Any] = {"sample_data": sample}
    try:
        doc = Registry(registry).load_ensemble(ensemble)
        info.update(name=doc["name"], created=doc.get("created"), tasks=doc.get("tasks"))
    except EnsembleError:
        if ensemble:   # a named ensemble must exist; without a name, a registry without one is fine
            raise
    scores = score_dir(predictions, data_dir)
    mean = sum(scores.values()) / len(scores) if scores else None
    path = make_submission(predictions, out, data_dir, info, mean, include_source)
    console.print(f"[green]wrote {path}[/]")
