"""Leaderboard file commands: ``validate`` (check them against the data) and ``submit`` (zip them)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from ..data import resolve_data
from ..leaderboard.write import score_checked
from ..registry.store import Registry
from ..leaderboard.submission import UNSTAMPED, checked_files, ensemble_record, pack
from ..tasks import TASK_NAMES, TASKS
from ..leaderboard.validate import OUTPUT_SPLITS, STAMP_NAME, Problem, StampCheck, check_folder, check_stamp, made_from_sample, report
from .options import DataOpt, JsonOpt, RegistryOpt, registry_data
from .render import console, err, note, print_json, problems, sample_banner


def _checked_json(pred_dir: Path, data_dir: Path, sample: bool, problems: list[Problem], found: dict,
                  stamp: StampCheck) -> dict[str, Any]:
    """What ``validate`` checked: the folders, each of the six files (rows read, problems) and the stamp."""
    files = []
    for task in TASK_NAMES:
        for s in OUTPUT_SPLITS:
            name = TASKS[task].output_name(s)
            checked = found.get((task, s))
            files.append({"file": name, "data_file": TASKS[task].file_name(s), "found": checked is not None,
                          "rows": checked.rows if checked else None,
                          "problems": sum(1 for p in problems if Path(p.file).name == name)})
    return {"folder": str(pred_dir), "data": str(data_dir), "sample_data": sample, "valid": not problems and not stamp.mismatches,
            "files": files, "problems": [p.__dict__ for p in problems],
            "stamp": None if stamp.stamp is None and not stamp.mismatches else
            {"ensemble": (stamp.stamp or {}).get("ensemble"), "matches": not stamp.mismatches,
             "mismatches": stamp.mismatches}}


def validate(pred_dir: Path = typer.Argument(Path("predictions"), help="Folder of leaderboard files."),
             data: DataOpt = None, as_json: JsonOpt = False) -> None:
    """Check leaderboard files against the data: header, ids, duplicates, values. Exit 1 on any problem.

    The stamp `predict` leaves in the folder is not checked as a file, but a stamp that does not
    match the files (or says a `predict` was interrupted while writing them) is reported, exit 1."""
    data_dir, sample = resolve_data(data)
    problems, found = check_folder(pred_dir, data_dir, None, OUTPUT_SPLITS)
    stamp = check_stamp(pred_dir, found)
    sample = sample or made_from_sample(stamp.stamp)
    if as_json:
        print_json(_checked_json(pred_dir, data_dir, sample, problems, found, stamp))
    else:
        sample_banner(sample)
        if problems or not stamp.mismatches:
            print_validated(problems, report(problems, found), pred_dir, data_dir)
        for m in stamp.mismatches:
            note(f"stamp: {m}")
        if stamp.mismatches and not stamp.incomplete and not problems:
            note(f"the files are not all what `ensemble predict` wrote: run it again, or delete "
                 f"{pred_dir / STAMP_NAME} if they were changed on purpose")
        if stamp.mismatches and not problems:
            err.print(f"{pred_dir}: refused: each file is valid alone, but its stamp says they are not one "
                      "ensemble's set", style="bold red", markup=False, highlight=False, soft_wrap=True)
    if problems or stamp.mismatches:
        raise typer.Exit(1)


def submit(predictions: Path = typer.Option(Path("predictions"), help="Folder of leaderboard files."),
           out: Path = typer.Option(Path("submissions"), help="Folder for the zip."),
           data: DataOpt = None,
           message: Optional[str] = typer.Option(None, "--message", "-m",
                                                 help="A note kept in the manifest (shown by `ensemble submissions`)."),
           ensemble: Optional[str] = typer.Option(
               None, help="Ensemble the files came from, for a folder without predict's stamp (checked against "
                          "the stamp when there is one)."),
           force: bool = typer.Option(False, "--force", help="Submit files that no longer match predict's stamp, "
                                                             "recorded in the manifest as unverified."),
           include_source: Optional[Path] = typer.Option(None, help="Also zip this source tree's code, as the course zip does."),
           registry: RegistryOpt = Path("checkpoints"),
           as_json: JsonOpt = False) -> None:
    """Validate, then zip the predictions with a manifest naming the ensemble that wrote them (from
    predict's stamp); never overwrites an earlier submission."""
    data_dir, sample = registry_data(registry, data)
    found = checked_files(predictions, data_dir)
    claimed = Registry(registry).load_ensemble(ensemble) if ensemble else None
    record = ensemble_record(predictions, found, sample, force, claimed)
    sample_banner(bool(record["sample_data"]))
    scores = score_checked(found)
    mean = sum(scores.values()) / len(scores) if scores else None
    path = pack(found, out, record, mean, include_source, message=message)
    if as_json:
        print_json({"submission": str(path), "ensemble": record, "dev_scores": scores, "mean_dev": mean,
                    "message": message}, default=str)
        return
    for m in record.get("stamp_mismatches", []):
        note(f"unverified: {m}")
    if record["name"] == UNSTAMPED:
        note(f"{predictions} has no stamp from `ensemble predict`: the manifest says ensemble {UNSTAMPED}")
    console.print(f"[green]wrote {escape(str(path))}[/] (ensemble {escape(str(record['name']))}"
                  + ("" if record["verified"] or record["name"] == UNSTAMPED else ", unverified") + ")")


# -- what it prints ------------------------------------------------------------
def print_validated(found: list, text: str, pred_dir: Path, data_dir: Path) -> None:
    """``validate``'s verdict: ``text`` is the formatted list of problems (empty when valid)."""
    if found:
        problems(text)
        err.print(f"[bold red]{len(found)} problems in {escape(str(pred_dir))}[/]")
    else:
        console.print(f"[green]{escape(str(pred_dir))}: all six leaderboard files are valid against "
                      f"{escape(str(data_dir))}[/]")


# -- bench ---------------------------------------------------------------------------------------
