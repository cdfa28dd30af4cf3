"""``soup``: average the weights of the registry's compatible model candidates into one model per
task (and optionally one multitask model), register each, and say what it is expected to gain."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from ..data import resolve_data
from ..registry.store import Registry
from ..soup.recipes import DEFAULT_RECIPE, RECIPES
from ..tasks import parse_tasks
from .options import DataOpt, DeviceOpt, JsonOpt, PrecisionOpt, RegistryOpt, examples
from .progress import RichProgress
from .render import console, fmt, note, print_json, print_table, sample_banner
from .tables import Col


@examples("ensemble soup --data ../data",
          "ensemble soup --recipe uniform --tasks sts --name sts-soup",
          "ensemble soup --multitask --repeats 0 --json")
def soup(
    data: DataOpt = None,
    registry: RegistryOpt = Path("checkpoints"),
    recipe: str = typer.Option(DEFAULT_RECIPE, help=f"{' or '.join(RECIPES)}: greedy takes candidates best-first "
                               "by the task's dev score and keeps each whose weights do not lower the averaged "
                               "model's dev score; uniform averages the whole group."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Comma-separated tasks to soup (default: every "
                                        "task of each group)."),
    multitask: bool = typer.Option(False, "--multitask", help="Also one multitask soup chosen on the mean dev "
                                   "score of its tasks."),
    name: Optional[str] = typer.Option(None, help="Name prefix of the soups (default: soup-<recipe>); each is "
                                       "<name>-<task> or <name>-multitask."),
    folds: int = typer.Option(5, help="Cross-fit folds for the held-out estimate."),
    repeats: int = typer.Option(2, help="Cross-fit repeats (0 skips the estimate)."),
    level: float = typer.Option(0.95, help="Confidence level of the held-out interval."),
    seed: int = typer.Option(0, help="Seed of the cross-fit folds."),
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    dry_run: bool = typer.Option(False, "--dry-run", help="Choose and score the soups; register nothing."),
    as_json: JsonOpt = False,
) -> None:
    """Average compatible candidates' weights (model soups): one model's cost, scored on dev by a
    real forward pass, its gain over the best single candidate held out as selection's is."""
    from ..selection.checks import check_folds
    from ..soup.build import make_soups

    data_dir, sample = resolve_data(data)
    sample_banner(sample)
    folds, level = check_folds(folds, level)
    honest = {"folds": folds, "repeats": repeats, "seed": seed, "level": level}
    report = make_soups(Registry(registry), data_dir, recipe, parse_tasks(tasks) if tasks else None, multitask,
                        name, device, getattr(precision, "value", precision), honest, save=not dry_run,
                        progress=RichProgress(as_json))
    if as_json:
        print_json(report.to_dict())
        return
    print_soups(report.to_dict())


def _heldout(h: dict[str, Any] | None) -> str:
    if not h or h.get("estimate") is None:
        return "-"
    low, high = h.get("low"), h.get("high")
    return f"{h['estimate']:+.4f} [{low:+.4f}, {high:+.4f}]" if low is not None else f"{h['estimate']:+.4f}"


def print_soups(r: dict[str, Any]) -> None:
    """Groups, left-out candidates, each soup's steps and the summary."""
    print_table("groups that can be averaged", [Col("group"), Col("architecture"), Col("tasks"), Col("members")],
                [[g["key"][:8], g["architecture"], ",".join(g["tasks"]), ", ".join(g["members"])] for g in r["groups"]])
    if r["left_out"]:
        print_table("left out", [Col("candidate"), Col("name"), Col("why", floor=30)],
                    [[x["id"], escape(x["name"]), escape(x["reason"])] for x in r["left_out"]])
    for s in r["soups"]:
        label = ",".join(s["tasks"])
        print_table(f"{label}: {s['recipe']} soup", [Col("step", True), Col("candidate"), Col("own dev", True),
                                                     Col("soup dev", True), Col("joined"), Col("why")],
                    [[str(st["step"]), st["candidate"], fmt(st["own_score"]), fmt(st["soup_score"]),
                      "yes" if st["joined"] else "no", st["reason"]] for st in s["steps"]])
    print_table(f"soups ({r['forward_passes']} dev forward passes, {r['seconds']:.1f} s)",
                [Col("tasks"), Col("members", True), Col("soup dev", True), Col("best single dev", True),
                 Col("held-out gain [interval]", True), Col("parameters", True), Col("candidate")],
                [[",".join(s["tasks"]), str(len(s["members"])), fmt(s["dev"]), fmt(s["best_single_dev"]),
                  _heldout(s["heldout"]), f"{s['parameters']:,}", s["candidate"] or "(not stored)"] for s in r["soups"]])
    for s in r["soups"]:
        if s["heldout"] and s["heldout"].get("verdict"):
            console.print(f"{','.join(s['tasks'])}: {escape(s['heldout']['verdict'])}")
    for n in r["notes"]:
        note(n)
