"""Registry commands: ``list``, ``compare``, ``show``, ``verify``, ``remove`` and ``register``."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from ..registry import register as reg_mod
from ..registry.home import DataChoice, data_for, remember
from ..registry.candidate import Candidate, Problem, damaged_note
from ..errors import EnsembleError
from ..registry.store import Registry
from ..tasks import TASKS
from .options import (CompileOpt, DataOpt, DeviceOpt, JsonOpt, PrecisionOpt, RegistryOpt, YesOpt, complete_candidates,
                      complete_runs_and_candidates, complete_sort)
from .progress import RichProgress
from .listing import DEFAULT_COLUMNS, FIELDS, compare_fields, filtered, parse_columns, write_delimited
from ..registry.keeper import run_problems
from ..registry.runs import RECORD, read_run, remove_damaged, run_dir
from .listing import human_size, params, size_on_disk
from .render import (console, err, fmt, note, plural, print_json, print_run_record, print_table, problems, sample_banner,
                     visible, warn)
from .tables import Col


def list_(registry: RegistryOpt = Path("checkpoints"),
          sort: Optional[str] = typer.Option(None, autocompletion=complete_sort, help="Sort by a task's dev metric (sst, para, sts)."),
          columns: Optional[str] = typer.Option(None, "--columns", help=f"Columns to show, comma-separated, or all "
                                                f"(known: {', '.join(FIELDS)}; default: {','.join(DEFAULT_COLUMNS)})."),
          where: Optional[list[str]] = typer.Option(None, "--where", help="Only candidates with KEY=VALUE or KEY>VALUE "
                                                    "(also <, >=, <=, !=), KEY a column or any training option: "
                                                    "arch=cerberus, sts>0.8, batch_size>=32, name='*-e1'; repeatable."),
          task: Optional[str] = typer.Option(None, help="Only candidates with dev predictions for this task."),
          no_truncate: bool = typer.Option(False, "--no-truncate", help="Keep every column, however wide the table."),
          as_csv: bool = typer.Option(False, "--csv", help="Comma-separated values, all columns, full precision."),
          as_tsv: bool = typer.Option(False, "--tsv", help="Tab-separated values, all columns, full precision."),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the ids, one a line."),
          as_json: JsonOpt = False) -> None:
    """The candidates in the registry."""
    keys = parse_columns(columns)
    if sort is not None and sort not in TASKS:
        raise EnsembleError(f"--sort {sort}: expected one of {', '.join(TASKS)}")
    everything, damaged = Registry(registry).scan()
    for problem in damaged:
        warn(damaged_note(problem))
    cands = filtered(everything, where or [], task)
    if sort:
        cands.sort(key=lambda c: (c.dev_metric(sort) is None, -(c.dev_metric(sort) or 0.0), c.id))
    if as_json:
        print_json([candidate_row(c) for c in cands])
    elif as_csv or as_tsv:
        write_delimited(cands, keys if columns else list(FIELDS), "," if as_csv else "\t")
    elif quiet:
        for c in cands:
            print(c.id)
    elif everything and not cands:
        console.print(f"no candidate of the {len(everything)} in {escape(str(registry))} matches")
    else:
        print_candidates(cands, registry, keys, keep_all=no_truncate)


def compare(candidates: list[str] = typer.Argument(..., autocompletion=complete_candidates, help="Two or more candidates (id, unique prefix or name)."),
            registry: RegistryOpt = Path("checkpoints"), as_json: JsonOpt = False) -> None:
    """Candidates' configs and dev scores side by side; the rows that differ are marked."""
    reg = Registry(registry)
    cands = reg.get_many(candidates)
    if len(cands) < 2:
        raise EnsembleError("compare needs two or more candidates")
    fields = compare_fields(cands)
    if as_json:
        print_json({"candidates": [c.id for c in cands],
                    "fields": [{k: f[k] for k in ("field", "values", "differs")} for f in fields]})
        return
    print_compare(cands, fields)


def show(candidate: str = typer.Argument(..., autocompletion=complete_runs_and_candidates, help="Candidate id (or unique prefix, or name), or a training run's id."),
         registry: RegistryOpt = Path("checkpoints"), as_json: JsonOpt = False) -> None:
    """A candidate's config, metrics, files and hashes, and the record of the run that trained it
    (every epoch: losses, dev scores, learning rate, time, tokens/s); or a run's record by its id."""
    reg = Registry(registry)
    try:
        c = reg.get(candidate)
    except EnsembleError:
        record = _run_record(reg, candidate)
        if record is None:
            raise
        if as_json:
            print_json(record, sort_keys=True)
        else:
            print_run_record(record, {x.id for x in reg.candidates()} if reg.exists else set())
        return
    record = _run_record(reg, c.run_id) if c.run_id else None
    if as_json:
        print_json({**c.manifest, "run": record} if record else c.manifest, sort_keys=True)
        return
    print_candidate(c)
    if record:
        print_run_record(record, {x.id for x in reg.candidates()})


def _run_record(reg: Registry, run_id: str) -> dict[str, Any] | None:
    """The record of run ``run_id`` in the registry (:mod:`ensemble.registry.runs`), or None."""
    try:
        path = run_dir(reg.root, run_id) / RECORD
    except EnsembleError:
        return None
    try:
        if not path.is_file():
            return None
    except OSError:   # a name too long for a path, say: no such run
        return None
    try:
        return read_run(path)
    except EnsembleError as e:   # set aside: the candidate is still shown
        warn(f"{e}; set aside (`ensemble verify --fix-runs` removes it)")
        return None


def verify(candidates: Optional[list[str]] = typer.Argument(None, autocompletion=complete_candidates,
                                                        help="Candidates to check (default: all)."),
           registry: RegistryOpt = Path("checkpoints"), as_json: JsonOpt = False,
           storage: Optional[str] = typer.Option(None, "--storage", help="Also check the searches of this study "
                                                 "database against the registry (default: the registry's own)."),
           fix_runs: bool = typer.Option(False, "--fix-runs", help="Remove the folders of damaged run records "
                                         "(record and checkpoint; never a candidate).")) -> None:
    """Rehash every stored file, and check the run records and the checkpoints of unfinished runs;
    exit 1 naming each mismatched, missing or extra file and each damaged run. With no candidates
    named, also check that the registry's runs agree with its searches' studies."""
    from ..search.study import check_searches  # lazy: optuna, only where a search was run

    reg = Registry(registry)
    if fix_runs:
        for name in remove_damaged(reg.root):
            (err if as_json else console).print(f"removed run {name}: its record was damaged")
    checked, problems = reg.verify(candidates or None)
    if not candidates:
        problems = problems + [Problem(*p) for p in run_problems(reg)] + check_searches(registry, storage)
    if as_json:
        print_json({"checked": [c.id for c in checked], "problems": [p.__dict__ for p in problems]})
    else:
        print_verify(checked, problems)
    if problems:
        raise typer.Exit(1)


def remove(candidates: list[str] = typer.Argument(..., autocompletion=complete_candidates, help="Candidate ids (or unique prefixes, or names), or a "
                                                             "damaged folder's name; several at once."),
           registry: RegistryOpt = Path("checkpoints"),
           yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."), as_json: JsonOpt = False) -> None:
    """Delete candidates from the registry (a damaged folder too, by its folder name); when saved
    ensembles use them, they are named and the removal must be confirmed (or --yes)."""
    reg = Registry(registry)
    found = [reg.find(ref) for ref in dict.fromkeys(candidates)]   # every reference resolved before any removal
    removed = []
    for c, damage in found:
        if damage is not None:
            warn(damaged_note(damage))
        used_by = reg.ensembles_naming(c.id)
        if used_by:
            warn(f"candidate {c.id} ({c.name}) is a member of the saved ensemble{'s' if len(used_by) > 1 else ''} "
                 f"{', '.join(used_by)}: `ensemble predict` with {'them' if len(used_by) > 1 else 'it'} fails once it "
                 "is removed; run `ensemble select` again")
        if not yes and not typer.confirm(visible(f"remove candidate {c.id} ({c.name})?"), default=False, err=as_json):
            (err if as_json else console).print(f"kept {c.id}")
            if len(found) == 1:
                raise typer.Exit(1)
            continue
        reg.remove(c.id, allow=used_by)   # refused if another saved ensemble names it by now
        removed.append((c, used_by))
        if not as_json:
            console.print(f"removed {c.id} ({escape(str(c.name))})")
    if as_json:
        if len(found) == 1 and removed:
            print_json({"removed": candidate_row(removed[0][0]), "ensembles": removed[0][1]})
        else:
            print_json({"removed": [candidate_row(c) for c, _ in removed],
                        "ensembles": sorted({n for _, used in removed for n in used})})


def register(
    paths: Optional[list[Path]] = typer.Argument(None, help="Candidate folders exported from another registry, or model folders."),
    data: DataOpt = None,
    predictions: Optional[Path] = typer.Option(None, help="Folder of <task>-<split>.csv prediction files from other code, "
                                               "or the course's leaderboard files (a folder or a submission zip: "
                                               "registered as hard labels, which vote)."),
    name: Optional[str] = typer.Option(None, help="Name shown in tables."),
    parameters: Optional[int] = typer.Option(None, help="--predictions: the model's parameter count, for the tables."),
    as_json: JsonOpt = False,
    refresh: bool = typer.Option(False, "--refresh", help="Recompute the cached predictions of stale candidates "
                                                          "(asks first when more than one, or other data)."),
    force: bool = typer.Option(False, help="--refresh: recompute even when not stale (named candidates or all)."),
    again: bool = typer.Option(False, "--again", help="Register even what is already registered (same content)."),
    candidates: Optional[list[str]] = typer.Option(None, "--candidate", "-c", help="--refresh: only these."),
    yes: YesOpt = False,
    precision: PrecisionOpt = "fp32",
    compile: CompileOpt = False,
    device: DeviceOpt = "auto",
    registry: RegistryOpt = Path("checkpoints"),
) -> None:
    """Add a model (its dev and test predictions are computed now) or predictions made elsewhere."""
    reg = Registry(registry)
    chosen = data_for(reg, data, other_ok=refresh)
    data_dir = chosen.folder
    sample_banner(chosen.sample)
    progress = RichProgress(as_json)
    if refresh:
        refresh_cmd(reg, chosen, candidates, force, yes, as_json, progress, device=device, precision=precision,
                    compile=compile)
        return
    if bool(paths) == (predictions is not None):
        raise EnsembleError("give either PATH... (models or exported candidates) or --predictions DIR --name NAME")
    if predictions is not None:
        if not name:
            raise EnsembleError("--predictions needs --name NAME")
        from ..leaderboard import votes   # here: numpy loads only for the command that reads predictions
        if not reg_mod.has_prediction_files(predictions) and votes.leaderboard_files(predictions):
            added = [votes.register_labels(reg, predictions, name, data_dir, parameters, force=again)]
        else:
            added = [reg_mod.register_predictions(reg, predictions, name, data_dir, parameters, force=again)]
        for line in reg_mod.dropped_note(added[0]) + ([votes.LOST] if added[0].kind == votes.LABELS else []):
            note(line)
        if not as_json:
            print_registered(added[0])
    else:
        if name and len(paths) > 1:
            raise EnsembleError("--name applies to one PATH; several were given")
        added = register_models(reg, paths, data_dir, name, progress, not as_json, device=device, precision=precision,
                                compile=compile, force=again)
    if as_json:
        print_json({"registered": [candidate_row(c) for c in added]})


def can_ask() -> bool:
    """Whether a question can be put to a person (stdin is a terminal)."""
    return sys.stdin is not None and sys.stdin.isatty()


def confirm(question: str, yes: bool, as_json: bool) -> None:
    """Go on when ``yes`` or the person says so; without a terminal and ``--yes``, refuse (exit 1)."""
    if yes:
        return
    if not can_ask():
        raise EnsembleError(f"{question} Not done: no terminal to ask on; pass --yes to confirm in a script")
    if not typer.confirm(visible(question), default=False, err=as_json):
        (err if as_json else console).print("nothing changed")
        raise typer.Exit(1)


def refresh_cmd(reg: Registry, chosen: DataChoice, refs: Optional[list[str]], force: bool, yes: bool, as_json: bool,
                progress: RichProgress, **run: Any) -> None:
    """``register --refresh``: what would be recomputed, asked first when it is more than one candidate
    or data other than the registry's; the registry then records the data it was refreshed onto."""
    for problem in reg.scan()[1] if reg.exists else []:
        warn(damaged_note(problem))   # left out of the refresh, as of every read
    plan = reg_mod.refresh_plan(reg, chosen.folder, refs, force)
    if chosen.other:
        confirm(f"these candidates were made from {chosen.recorded}; recompute {len(plan)} of them on "
                f"{chosen.folder} instead (their cached predictions are replaced)?", yes, as_json)
    elif len(plan) > 1:
        confirm(f"recompute the cached predictions of {len(plan)} candidates "
                f"({', '.join(c.id for c, _ in plan[:5])}{', ...' if len(plan) > 5 else ''})?", yes, as_json)
    done = reg_mod.refresh(reg, chosen.folder, refs, progress=progress, force=force, plan=plan, **run)
    progress.stop()
    if done or chosen.other:   # the record follows the files the predictions are now bound to
        remember(reg, chosen.folder, replace=True)
    print_done(done, as_json)


def print_done(done: list, as_json: bool) -> None:
    """What ``register --refresh`` recomputed: each candidate and why (its stale files, or forced)."""
    if as_json:
        print_json({"refreshed": [{**candidate_row(c), "stale": stale} for c, stale in done]})
    else:
        print_refreshed(done)


def register_models(reg: Registry, paths: list[Path], data_dir: Path, name: Optional[str], progress: RichProgress,
                    say: bool, **run: Any) -> list[Candidate]:
    """Register model folders one at a time (one model in memory), printing each as it lands when ``say``."""
    from ..modeling.infer import TokenCache  # lazy: keeps select/list/validate fast
    cache = TokenCache()   # each input file is tokenised once for all models sharing a tokenizer
    added = []
    for path in paths:
        added.append(reg_mod.register_model(reg, path, data_dir, name, progress=progress, cache=cache, **run))
        progress.stop()
        if say:
            print_registered(added[-1])
    return added


# -- what these commands print ------------------------------------------------------------
def candidate_row(c) -> dict[str, Any]:
    """A candidate as ``list --json`` prints it."""
    return {
        "id": c.id, "name": c.name, "kind": c.kind, "architecture": c.architecture,
        "tasks": c.tasks, "parameters": c.parameters,
        "dev": {t: c.dev_metric(t) for t in TASKS if c.dev_metric(t) is not None},
        "epoch": c.epoch, "created": c.created,
        "base": c.base, "base_provenance": c.base_provenance,
        **{k: FIELDS[f].value(c) for k, f in (("lr", "lr"), ("smart_weight", "smart"), ("layer_decay", "layer_decay"),
                                              ("seed", "seed"), ("task_layers", "task_layers"))},
    }


def print_candidates(cands: list, registry: Path, keys: list[str], keep_all: bool = False) -> None:
    """``list``'s table of the ``keys`` columns (see :data:`.listing.FIELDS`)."""
    if not cands:
        console.print(f"no candidates in {escape(str(registry))} yet: `ensemble train` or `ensemble register` adds some")
        return
    fields = [FIELDS[k] for k in keys]
    total = human_size(sum(size_on_disk(c) for c in cands))
    print_table(f"{plural(len(cands), 'candidate')} in {registry}, {total} on disk", [Col(f.header, f.numeric, f.drop, f.floor) for f in fields],
                [[escape(f.show(f.value(c))) for f in fields] for c in cands], keep_all,
                hint="--no-truncate or --columns shows them")


def print_candidate(c) -> None:
    console.print(f"[bold]{c.id}[/]  {escape(str(c.name))}  ({escape(c.kind)}, "
                  f"{escape(str(c.architecture))}, {params(c.parameters)} parameters)")
    console.print(f"created {escape(str(c.created))}  at {escape(str(c.path))}")
    dev = [f"{t} {c.dev_metric(t):.4f}" for t in TASKS if c.dev_metric(t) is not None]
    console.print(f"dev: {', '.join(dev) or '-'}", highlight=False)
    if c.training:
        tr = dict(c.training)
        changed = _changed_settings(tr.get("config") or {})
        console.print(f"run {escape(str(tr.get('run_id') or '-'))}, epoch {tr.get('epoch', '-')}"
                      + (f"; settings apart from the defaults: {escape(changed)}" if changed else "; default settings"),
                      highlight=False)
    console.print("(the whole manifest: `ensemble show ID --json`)", highlight=False)
    rows = [[r.task, r.split, fmt(c.metric(r.task, r.split)), str(r.rows), r.data_file or "-",
             (r.data_sha256 or "-")[:16]] for r in c.prediction_records()]
    print_table("dev metrics and cached predictions", [Col("task"), Col("split"), Col("metric", True), Col("rows", True),
                                                       Col("data file"), Col("data sha256", drop=1)], rows)
    files = [[rel, f"{info.size:,}", info.sha256] for rel, info in sorted(c.files.items())]
    print_table("files", [Col("file"), Col("size", True), Col("sha256")], files)


def _changed_settings(config: dict[str, Any]) -> str:
    """A training configuration as the options that differ from ``train``'s defaults: ``lr 2e-05, seed 1``."""
    from ..training.config import TrainConfig

    defaults = TrainConfig().to_dict()
    shown = []
    for k, v in config.items():
        if k in ("base", "architecture", "task_layers", "tasks", "varies") or defaults.get(k, v) == v:
            continue
        shown.append(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}")
    return ", ".join(shown)


def print_compare(cands: list, fields: list[dict[str, Any]]) -> None:
    """``compare``: one column per candidate; rows whose values differ are bold and marked ``*``."""
    cols = [Col("*"), Col("field"), *[Col(c.id) for c in cands]]
    rows = []
    for f in fields:
        row = ["*" if f["differs"] else "", escape(f["field"]), *[escape(x) for x in f["shown"]]]
        rows.append([f"[bold]{x}[/]" if x else x for x in row] if f["differs"] else row)
    print_table(f"{len(cands)} candidates compared (* marks the rows that differ)", cols, rows)


def print_verify(checked: list, found: list) -> None:
    for p in found:
        problems(str(p))
    n_files = sum(len(c.files) for c in checked)
    colour = "red" if found else "green"
    console.print(f"[{colour}]{len(checked)} candidates, {n_files} files checked: {len(found)} problems[/]")


def print_registered(c) -> None:
    dev = ", ".join(f"{t} {c.dev_metric(t):.4f}" for t in TASKS if c.dev_metric(t) is not None)
    console.print(f"registered [bold]{c.id}[/] ({escape(str(c.name))}): dev {dev}")


def print_refreshed(done: list) -> None:
    for c, stale in done:
        console.print(f"refreshed {c.id} ({escape(str(c.name))}): {escape('; '.join(stale) or 'forced')}")
    if not done:
        console.print("no stale candidates")


# -- selection and leaderboard files -------------------------------------------------------------
