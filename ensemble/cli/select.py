"""Ensemble commands: ``select`` (build and save each task's ensemble) and ``predict`` (write its files)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from ..errors import EnsembleError
from ..registry.store import Registry
from ..selection import DEFAULT_MODE
from ..tasks import parse_tasks
from .options import (ALL_TASKS, CaruanaStepsOpt, CompileOpt, DataOpt, DeviceOpt, JsonOpt, PrecisionOpt, RegistryOpt,
                      SelectMode, TasksOpt, complete_ensembles, plain, registry_data)
from .progress import RichProgress
from ..tasks import TASKS
from .listing import params
from .render import console, fmt, note, print_json, print_table, sample_banner
from .tables import Col


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
    replaced = _refuse_replacing(Registry(registry), name or f"ensemble-{mode}", mode, force)
    data_dir, sample = registry_data(registry, data)
    sample_banner(sample)
    from .. import workflow   # here: numpy and the selection load only for the commands that select

    report = workflow.select(Registry(registry), data_dir, parse_tasks(tasks), mode, max_size, steps, repeats,
                             seed, name, sample=sample, folds=folds, level=level, bags=bags, fraction=fraction)
    if as_json:
        print_json(report.to_dict())
        return
    print_selection(report, verbose, replaced)


def _refuse_replacing(reg: Registry, name: str, mode: str, force: bool) -> str | None:
    """A saved ensemble of this name made in another mode is kept unless --force (a rerun in the same
    mode refreshes it, as after training more candidates, and says so); returns when the ensemble it
    replaces was saved (None: there was none)."""
    if not reg.exists or name not in reg.ensemble_names():
        return None
    doc = reg.load_ensemble(name)
    if doc.get("mode") != mode and not force:
        raise EnsembleError(f"a saved ensemble named {name!r} was made in mode {doc.get('mode')}; selecting in mode "
                            f"{mode} would replace it: give another --name, or --force to replace it")
    return str(doc.get("created") or "an unknown time")


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


# -- what these commands print ------------------------------------------------------------
def print_selection(report, verbose: bool = False, replaced: str | None = None) -> None:
    """Each task's trajectory, then the summary (params, then the held-out estimate drop first), then where
    the ensemble was saved (and when the one it replaced was)."""
    for text in report.notes:
        note(text)
    for task, sel in report.tasks.items():
        print_trajectory(task, sel.get("ensemble_mode") or report.mode, sel, verbose)
    tasks = list(report.tasks)
    print_systems(report.tasks)
    cols = [Col("system"), Col("params", True, 2), *[Col(f"{t} dev", True) for t in tasks], Col("mean dev", True),
            Col("mean held-out est.", True, 1)]
    rows = [[escape(row["system"]), params(row["parameters"]), *[fmt(row["dev"].get(t)) for t in tasks],
             fmt(row["mean_dev"]), fmt(row.get("mean_heldout"))] for row in report.summary]
    print_table("summary" + (" (SAMPLE DATA)" if report.sample else ""), cols, rows)
    if report.path:
        console.print(f"saved ensemble [bold]{escape(report.name)}[/] to {escape(str(report.path))}"
                      + (f" (replacing the one saved {escape(replaced)})" if replaced else ""))


def print_systems(tasks: dict[str, Any]) -> None:
    """mode auto: per task every candidate system's held-out estimate side by side, the choice
    (marked *) and the nested estimate of choosing that way."""
    auto = {t: sel for t, sel in tasks.items() if sel.get("systems")}
    if not auto:
        return
    systems = list(next(iter(auto.values()))["systems"])
    cols = [Col("task"), *[Col(s, True) for s in systems], Col("chosen", drop=2), Col("nested est.", True),
            Col("interval", drop=1)]
    rows = []
    for t, sel in auto.items():
        est = {s: v.get("estimate") for s, v in sel["systems"].items()}
        cells = [("-" if est.get(s) is None else f"{est[s]:+.4f}") + ("*" if s == sel["chosen"] else " ")
                 for s in systems]
        held = sel.get("heldout") or {}
        interval = ("-" if held.get("low") is None else
                    f"[{held['low']:+.4f}, {held['high']:+.4f}] {held['level']:.0%}")
        rows.append([t, *cells, escape(sel["chosen"]), fmt(held.get("estimate")) if held.get("estimate") is None
                     else f"{held['estimate']:+.4f}", interval])
    print_table("auto: held-out gain over the best single candidate, per system (cross-fitted; * chosen)", cols, rows)


def _kept_steps(mode: str, steps: list[dict[str, Any]], verbose: bool) -> tuple[list[dict[str, Any]], int]:
    """caruana: the kept prefix (every step under ``verbose``) and how many steps are not shown."""
    if mode != "caruana" or verbose:
        return steps, 0
    kept = [s for s in steps if s.get("accepted")]
    return kept, len(steps) - len(kept)


def print_trajectory(task: str, mode: str, sel: dict[str, Any], verbose: bool = False) -> None:
    """One task's selection steps, then its gain in sample, held out and on labelled test data,
    and whether the ensemble is expected to beat the best single candidate, in words."""
    steps, hidden = _kept_steps(mode, sel["trajectory"], verbose)
    cols = [Col("step", True), Col("candidate"), Col("own dev", True, 1), Col("ensemble dev", True),
            Col("change", True), Col(""), Col("why", drop=2)]
    rows = [[str(s.get("step")), escape(str(s.get("candidate"))) + (" [dim](vote)[/]" if s.get("vote") else ""),
             fmt(s.get("own_score")), fmt(s.get("ensemble_score")),
             (f"{s['change']:+.4f}" if s.get("change") is not None else "-"),
             "[green]added[/]" if s.get("accepted") else "[dim]rejected[/]", escape(str(s.get("reason", "")))]
            for s in steps]
    print_table(f"{task}: {mode} selection ({TASKS[task].metric} on dev)", cols, rows)
    if hidden:
        console.print(f"  {task}: {hidden} later steps not kept (they do not reach the best dev score); "
                      "--verbose or --json shows them", highlight=False)
    n = len(sel["weights"])
    line = (f"  {task}: {n} member{'s' if n != 1 else ''}, dev {sel['ensemble_dev_score']:.4f}; gain over the best "
            f"single candidate: in-sample {sel['in_sample_gain']:+.4f}")
    held = sel.get("heldout") or {}
    own = (sel.get("systems") or {}).get(mode)
    if own is not None and own.get("estimate") is not None:     # auto: this ensemble's own estimate
        line += (f", held-out {own['estimate']:+.4f} \\[{held['level']:.0%} interval {own['low']:+.4f}, "
                 f"{own['high']:+.4f}] ({held['folds']}-fold x {held['repeats']} cross-fit, corrected t)")
    elif own is None and held.get("estimate") is not None:
        line += (f", held-out {held['estimate']:+.4f} \\[{held['level']:.0%} interval {held['low']:+.4f}, "
                 f"{held['high']:+.4f}] ({held['folds']}-fold x {held['repeats']} cross-fit, corrected t)")
    console.print(line, highlight=False)
    if sel.get("verdict"):
        style = "green" if sel.get("expected_to_beat_single") else "yellow"
        console.print(f"  {task}: [{style}]{escape(sel['verdict'])}[/]"
                      + ("; the best single candidate is saved for it" if sel.get("system") == "best single" else ""),
                      highlight=False)
    if sel.get("test"):
        console.print(f"  {task}: labelled test data (never used for selection): ensemble "
                      f"{sel['test']['ensemble']:.4f}, best single candidate {sel['test']['best_single']:.4f}",
                      highlight=False)


def print_predicted(result: dict[str, Any]) -> None:
    for text in result.get("notes", []):
        note(text)
    for p in result["written"]:
        console.print(f"wrote {escape(str(p))}")
    if result.get("dev_scores"):
        vals = list(result["dev_scores"].values())
        print_table(f"dev scores of {result['ensemble']} (from the rounded files)",
                    [Col(k, True) for k in [*result["dev_scores"], "mean"]],
                    [[*[f"{v:.4f}" for v in vals], f"{sum(vals) / len(vals):.4f}"]])
    if "score" in result:
        metric = result.get("metric", "score")
        console.print(f"{metric} on the labelled input ({result.get('rows', '?'):,} rows): {result['score']:.4f}")
