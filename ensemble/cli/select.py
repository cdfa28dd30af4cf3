"""Ensemble commands: ``select`` (build and save each task's ensemble) and ``predict`` (write its files)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ..errors import EnsembleError
from ..registry.store import Registry
from ..selection import DEFAULT_MODE
from ..tasks import parse_tasks
from .options import (ALL_TASKS, CaruanaStepsOpt, CompileOpt, DataOpt, DeviceOpt, JsonOpt, PrecisionOpt, RegistryOpt,
                      SelectMode, TasksOpt, complete_ensembles, plain, registry_data)
from .progress import RichProgress
from .render import console, print_json, print_predicted, print_selection, sample_banner


def select(
    data: DataOpt = None,
    registry: RegistryOpt = Path("checkpoints"),
    mode: SelectMode = typer.Option(DEFAULT_MODE, callback=plain,
                                    help="auto (per task, the best single candidate or the mode with the best "
                                         "cross-fitted held-out estimate; ties to the simpler: single, greedy, "
                                         "greedy-strict, caruana, bagged), caruana (forward selection with "
                                         "replacement), greedy (the report's rule: best-first, join if dev does not "
                                         "drop), greedy-strict (join only if dev rises) or bagged (caruana on random "
                                         "halves of the library, averaged)."),
    max_size: Optional[int] = typer.Option(None, help="At most this many members per task."),
    steps: CaruanaStepsOpt = 50,
    folds: int = typer.Option(5, help="Cross-fit folds for the held-out estimate."),
    repeats: int = typer.Option(2, help="Cross-fit repeats (each a new deal of the folds; 0 skips the estimate)."),
    level: float = typer.Option(0.95, help="Confidence level of the held-out interval."),
    bags: int = typer.Option(20, help="bagged: selections averaged."),
    fraction: float = typer.Option(0.5, help="bagged: share of the library each selection sees."),
    seed: int = typer.Option(0, help="Seed of the cross-fit folds and of bagged's draws."),
    tasks: TasksOpt = ALL_TASKS,
    name: Optional[str] = typer.Option(None, help="Name of the saved ensemble (default: ensemble-<mode>)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show every caruana step, not only the kept ones."),
    force: bool = typer.Option(False, "--force", help="Replace a saved ensemble of this name made in another mode."),
    as_json: JsonOpt = False,
) -> None:
    """Build each task's ensemble; show what each member adds and how much gain survives held out."""
    _refuse_replacing(Registry(registry), name or f"ensemble-{mode}", mode, force)
    data_dir, sample = registry_data(registry, data)
    sample_banner(sample)
    from .. import workflow   # here: numpy and the selection load only for the commands that select

    report = workflow.select(Registry(registry), data_dir, parse_tasks(tasks), mode, max_size, steps, repeats,
                             seed, name, sample=sample, folds=folds, level=level, bags=bags, fraction=fraction)
    if as_json:
        print_json(report.to_dict())
        return
    print_selection(report, verbose)


def _refuse_replacing(reg: Registry, name: str, mode: str, force: bool) -> None:
    """A saved ensemble of this name made in another mode is kept unless --force (a rerun in the same
    mode refreshes it, as after training more candidates)."""
    if force or not reg.exists or name not in reg.ensemble_names():
        return
    saved = reg.load_ensemble(name).get("mode")
    if saved != mode:
        raise EnsembleError(f"a saved ensemble named {name!r} was made in mode {saved}; selecting in mode {mode} "
                            f"would replace it: give another --name, or --force to replace it")


def predict(
    data: DataOpt = None,
    out: Path = typer.Option(Path("predictions"), help="Folder for the leaderboard files."),
    ensemble: Optional[str] = typer.Option(None, autocompletion=complete_ensembles,
                                           help="Saved ensemble name (default: the latest)."),
    input: Optional[Path] = typer.Option(None, "--input", help="A new file in the course format to predict."),
    task: Optional[str] = typer.Option(None, help="--input: its task (sst, para, sts)."),
    precision: PrecisionOpt = "fp32",
    compile: CompileOpt = False,
    device: DeviceOpt = "auto",
    registry: RegistryOpt = Path("checkpoints"),
    as_json: JsonOpt = False,
) -> None:
    """Write the six leaderboard files from the ensemble's cached predictions (or run it on --input)."""
    if input is None:
        only = [o for o, given in (("--task", task is not None), ("--device", device != "auto"),
                                   ("--precision", precision != "fp32"), ("--compile", compile)) if given]
        if only:
            raise EnsembleError(f"{', '.join(only)}: only with --input (the leaderboard files come from the "
                                "cached predictions; no model runs)")
    reg = Registry(registry)
    doc = reg.load_ensemble(ensemble)   # resolved once: the ensemble named below is the one that predicts
    name = ensemble or doc["name"]
    if input is not None:
        if task is None:
            raise EnsembleError("--input needs --task (sst, para or sts)")
        from .. import workflow   # here: numpy loads only for the commands that predict

        result = workflow.predict_input(reg, input, task, out, name, device, precision, RichProgress(as_json),
                                        compile=compile)
    else:
        data_dir, sample = registry_data(registry, data)
        sample_banner(sample)
        from .. import workflow

        result = workflow.predict(reg, data_dir, out, name)
    result["ensemble_saved"] = doc.get("created")
    if as_json:
        print_json(result)
        return
    console.print(f"ensemble: {escape(name)} (saved {escape(str(doc.get('created') or 'at an unknown time'))})")
    print_predicted(result)
