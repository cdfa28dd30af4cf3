"""``ensemble run``: the main job in one call, from a data folder to a validated submission.

Trains a grid (a grid file's or a preset's configurations, :mod:`ensemble.scale.grid`): a configuration
with a run already finished on the same data is skipped; its unfinished run continues from its last
completed epoch, the candidates of its other interrupted runs are removed, so an interrupted
``ensemble run`` resumes where it stopped. Here, one after another (``engine=None``), or on Ray
(:mod:`ensemble.scale.driver`: an unfinished run starts again there, from the start). Then selects
per task, writes the six leaderboard files, validates them and zips a submission.

Each configuration is planned once (:func:`plan`: what the registry holds of it, read before
anything changes) and both engines walk that plan in its order through one step
(:func:`settled`: clean, skip or train). Everything said goes through one
:class:`~ensemble.progress.Progress`: lines (``say``) and events (``"trained"``, and the Ray
engine's ``"grid"``); nothing here formats for a terminal.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from . import workflow
from .registry.candidate import Candidate
from .data import load_splits, resolve_data, split_hashes
from .errors import EnsembleError
from .scale.grid import load_grid, load_preset
from .progress import NULL, Progress
from .scale.driver import RayOptions, train_grid
from .registry.home import data_for
from .registry.keeper import close_records, resumable, train_run
from .registry.runs import RunBusy, damaged_note, read_runs, run_complete, run_dir, run_lock, run_owner, runs_of
from .registry.store import Registry
from .leaderboard.submission import checked_files, ensemble_record, pack
from .tasks import TASK_NAMES
from .training.config import TrainConfig
from .selection import DEFAULT_MODE


@dataclass
class RunOptions:
    """What ``ensemble run`` trains, how, and where it writes: its command-line options."""
    data: Path | None = None              # the course files (None: ./data, else the packaged sample)
    base: str | None = None               # the encoder of every run (None: the grid's)
    preset: str | None = None             # a shipped grid (None, without ``grid``: quick)
    grid: Path | None = None              # a grid file, instead of a preset
    registry: Path = Path("checkpoints")
    out: Path = Path("predictions")       # the six leaderboard files
    submissions: Path = Path("submissions")
    device: str | None = None
    mode: str = DEFAULT_MODE              # the selection mode
    system: str = "auto"                  # auto: per task the better system by the held-out estimate; ensemble
    engine: RayOptions | None = None      # None: here, one run after another; else on Ray
    soup: bool = False                    # make each task's greedy soup before selecting


def quick_preset(base: str | None = None) -> list[TrainConfig]:
    """The shipped grid ``ensemble/scale/grids/quick.toml``: small enough for a 2-core CPU in minutes with
    the MiniLM stand-in (400 examples per task, 2 epochs, lr 1e-4, four configurations)."""
    return load_preset("quick", base).configs


def paper_preset(base: str | None = None) -> list[TrainConfig]:
    """The shipped grid ``ensemble/scale/grids/paper.toml``: the report's grid (meant for a GPU): multi,
    cerberus-2/3, triple for SST; SMART 10-15; layer decay 0.95; lr 1e-5; up to 10 epochs with
    every best epoch kept; three seeds."""
    return load_preset("paper", base).configs


PRESETS: dict[str, tuple[Callable[[str], list[TrainConfig]], str]] = {
    "quick": (quick_preset, "minilm"),
    "paper": (paper_preset, "bert-base-uncased"),
}


def grid_configs(data: Path | None, base: str | None, preset: str | None, grid: Path | None,
                 registry: Path | None = None) -> tuple[list[TrainConfig], str, Path, bool]:
    """What ``run`` trains: the grid file's configurations, else the preset's (``base`` replacing
    theirs); with the name the selection is saved under, the data folder and whether it is the
    packaged sample (a preset on it is trained on all of it, for at least 3 epochs; a grid file as written)."""
    if grid is not None:
        configs, name = load_grid(grid, base).configs, Path(grid).stem
    else:
        preset = preset or "quick"
        if preset not in PRESETS:
            raise EnsembleError(f"--preset {preset}: expected one of {', '.join(PRESETS)}")
        make, default_base = PRESETS[preset]
        configs, name = make(base or default_base), preset
    if registry is None:
        data_dir, sample = resolve_data(data)
    else:   # the registry's own data when --data is not given (ensemble.registry.home)
        chosen = data_for(Registry(registry), data)
        data_dir, sample = chosen.folder, chosen.sample
    if sample and grid is None:  # a preset on the tiny sample: all of it, more epochs (a grid file is as written)
        configs = [replace(c, limit=None, epochs=max(c.epochs, 3)) for c in configs]
    return configs, name, data_dir, sample


def plan(reg: Registry, configs: list[TrainConfig], data_dir: Path) -> list[dict[str, Any]]:
    """Each configuration's name, fingerprint and what the registry holds of it, read once, before
    anything changes: the candidates of its finished runs (``registered``, ids sorted: it is
    skipped), of its interrupted ones (``interrupted``), those runs (``runs``: run id ->
    candidates), and its unfinished run that ``--resume`` continues (``unfinished``: its record, or
    None; ``epoch``: its last completed epoch). Reads only; the data files are hashed once per task set."""
    hashes: dict[tuple[str, ...], dict[str, str]] = {}
    rows = []
    for cfg in configs:
        if cfg.tasks not in hashes:
            hashes[cfg.tasks] = split_hashes(load_splits(data_dir, cfg.tasks, ("train", "dev", "test")))
        rows.append(_row(reg, cfg, cfg.fingerprint(hashes[cfg.tasks])))
    return rows


def _row(reg: Registry, cfg: TrainConfig, fp: str) -> dict[str, Any]:
    """One configuration's row of :func:`plan`, read now."""
    runs = runs_of(reg, fp)
    unfinished, epoch = resumable(reg, fp)
    return {"name": cfg.run_name, "fingerprint": fp, "config": cfg, "runs": runs,
            "registered": sorted(c.id for cands in runs.values() if run_complete(cands) for c in cands),
            "interrupted": sorted(c.id for cands in runs.values() if not run_complete(cands) for c in cands),
            "unfinished": unfinished, "epoch": epoch}


def _live_runs(reg: Registry, row: dict[str, Any]) -> dict[str, str]:
    """The runs of a row's configuration that another live process is training now (run id -> who):
    those of its candidates and its records that say "running"."""
    ids = {rid for rid in row["runs"] if rid is not None}
    try:
        ids |= {r["run_id"] for r in read_runs(reg.root)
                if r.get("status") == "running" and r.get("fingerprint") == row["fingerprint"]}
    except EnsembleError:
        pass
    return {rid: who for rid in sorted(ids) if (who := run_owner(reg.root, rid))}


def dry_run(opts: RunOptions) -> dict[str, Any]:
    """``run --dry-run``: the runs, their fingerprints, and which are already in the registry."""
    configs, name, data_dir, sample = grid_configs(opts.data, opts.base, opts.preset, opts.grid, opts.registry)
    rows = plan(Registry(opts.registry), configs, data_dir)
    hidden = ("config", "runs", "unfinished", "epoch")
    return {"grid": name, "data": str(data_dir), "sample": sample,
            "runs": [{**{k: v for k, v in r.items() if k not in hidden}, "config": r["config"].to_dict(),
                      "status": "registered" if r["registered"] else "to train"} for r in rows]}


def continued(row: dict[str, Any]) -> str | None:
    """The run the local engine continues for a plan's row: its unfinished run, where that completed
    an epoch and no run of the configuration finished (None: none)."""
    return row["unfinished"]["run_id"] if row["unfinished"] is not None and row["epoch"] and \
        not row["registered"] else None


def settled(reg: Registry, rows: list[dict[str, Any]], progress: Progress, skipped: list[str],
            resume: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """The one walk both engines take over a plan, in its order. For each configuration: the
    candidates of its interrupted runs are removed (:func:`_clean_interrupted`; with ``resume``,
    never those of the run it continues, :func:`continued`); one with a finished run is skipped
    (its records closed, said, its name added to ``skipped``); each other is yielded, with its
    ``[i/n]`` head, to train. Lazy: the local engine trains each before the next is settled. A
    configuration that another live process is training (its run's lock held,
    :func:`~ensemble.registry.runs.run_lock`) is waited for, said, and read again before it is settled."""
    for i, row in enumerate(rows, 1):
        head = f"[{i}/{len(rows)}]"
        live = _live_runs(reg, row)
        if live:   # another process trains this configuration now: wait for it, then read it again
            for rid, who in live.items():
                progress.say(f"{head} {row['name']}: waiting for {who}, which is training its run {rid}")
                with run_lock(reg.root, rid, wait=True):
                    pass
            row = _row(reg, row["config"], row["fingerprint"])
        keep = continued(row) if resume else None
        _clean_interrupted(reg, {k: v for k, v in row["runs"].items() if k != keep}, f"{head} {row['name']}",
                           progress)
        if row["registered"]:
            close_records(reg, [c for cands in row["runs"].values() if run_complete(cands) for c in cands])
            skipped.append(row["name"])
            progress.say(f"{head} {row['name']}: already in the registry ({', '.join(row['registered'])}); skipped")
            continue
        yield head, row


def train_ray(reg: Registry, configs: list[TrainConfig], data_dir: Path, engine: RayOptions,
              progress: Progress = NULL) -> dict[str, Any]:
    """The grid on Ray (:func:`ensemble.scale.driver.train_grid`): what is registered is skipped,
    the leftovers of interrupted runs cleaned up first, as ``--engine local`` does; an unfinished
    run is not continued on Ray: its configuration is trained again from the start."""
    skipped: list[str] = []
    todo = [(row["fingerprint"], row["config"])
            for _, row in settled(reg, plan(reg, configs, data_dir), progress, skipped, resume=False)]
    summary = (train_grid(reg, todo, data_dir, engine, progress) if todo else
               {"engine": "ray", "runs": [], "done": [], "retried": [], "failed": [], "seconds": 0.0,
                "startup_seconds": 0.0, "runs_seconds": 0.0})
    return {**summary, "skipped": skipped}


def train_local(reg: Registry, configs: list[TrainConfig], data_dir: Path, device: str | None,
                progress: Progress = NULL) -> tuple[list[dict[str, Any]], list[str]]:
    """Train each configuration into the registry, one after another: one with a run already
    finished on the same data skipped, its unfinished run continued from that run's last completed
    epoch (``train --resume``), its other interrupted runs cleaned up (:func:`settled`); each
    trained run a ``"trained"`` event. Returns (the trained runs' results, the skipped run names)."""
    trained: list[dict[str, Any]] = []
    skipped: list[str] = []
    for head, row in settled(reg, plan(reg, configs, data_dir), progress, skipped, resume=True):
        cfg, go_on = row["config"], continued(row)
        if go_on:
            progress.say(f"{head} resuming {cfg.run_name}: run {go_on} after epoch {row['epoch']} of {cfg.epochs}")
        else:
            progress.say(f"{head} training {cfg.run_name}")
        t1 = time.perf_counter()
        result = train_run(reg, cfg, data_dir, row["unfinished"], row["epoch"], device=device, progress=progress)
        progress.stop()
        trained.append(result.to_dict())
        progress.event({"kind": "trained", "result": result, "seconds": time.perf_counter() - t1})
    return trained, skipped


def run(opts: RunOptions, progress: Progress = NULL) -> dict[str, Any]:
    """Train the grid file's or the preset's runs (skipping what is done) here, or on Ray with
    ``opts.engine``; select with ``opts.mode``, write, validate and zip. ``system="auto"`` submits,
    per task, the better system by the held-out estimate (the choice and its reason are printed and
    recorded in the submission's manifest); "ensemble" always the ensemble. Where a Ray run failed,
    nothing is selected: the result names the failed runs (``failed``) and a rerun trains only them.
    ``opts.soup``: the greedy soups of the registry's candidates are made first (:func:`soup_into`)
    and join selection."""
    t0 = time.perf_counter()
    configs, name, data_dir, sample = grid_configs(opts.data, opts.base, opts.preset, opts.grid, opts.registry)
    if sample:
        progress.say(f"no --data and no ./data, so using the sample shipped in the package ({data_dir}); its "
                     "scores mean nothing", label="SAMPLE DATA")
    reg = Registry(opts.registry)
    damaged = damaged_note(reg.root)
    if damaged:
        progress.say(damaged)
    summary = None
    if opts.engine is None:
        trained, skipped = train_local(reg, configs, data_dir, opts.device, progress)
    else:
        engine = replace(opts.engine, device=opts.device or opts.engine.device)
        summary = train_ray(reg, configs, data_dir, engine, progress)
        trained = [r for r in summary["runs"] if r["status"] == "done"]
        skipped = summary["skipped"]
        if summary["failed"]:
            return {"selection": None, "trained": trained, "skipped": skipped, "failed": summary["failed"],
                    "grid": summary, "sample": sample, "seconds": time.perf_counter() - t0}
    return {**_submit(reg, data_dir, name, sample, opts, progress), "trained": trained, "skipped": skipped, "failed": [],
            "grid": summary, "sample": sample, "seconds": time.perf_counter() - t0}


def _submit(reg: Registry, data_dir: Path, name: str, sample: bool, opts: RunOptions,
            progress: Progress = NULL) -> dict[str, Any]:
    """Select per task (with ``opts.soup``, the soups made first), write the six files, validate them
    once and zip them."""
    if opts.soup:
        soup_into(reg, data_dir, opts.device, progress)
    report = workflow.select(reg, data_dir, TASK_NAMES, opts.mode, name=f"run-{name}", sample=sample,
                             system=opts.system)
    pred = workflow.predict(reg, data_dir, opts.out, report.name)
    found = checked_files(opts.out, data_dir)   # the six files validated once, for the zip as for `submit`
    record = {**ensemble_record(opts.out, found, sample), "preset": name, "mode": opts.mode, "system": opts.system}
    mean = sum(pred["dev_scores"].values()) / len(pred["dev_scores"]) if pred["dev_scores"] else None
    zip_path = pack(found, opts.submissions, record, mean)
    return {"selection": report, "written": pred["written"], "dev_scores": pred["dev_scores"],
            "submission": str(zip_path)}


def soup_into(reg: Registry, data_dir: Path, device: str | None, progress: Progress = NULL) -> list[str]:
    """``run --soup``: the greedy soup of each task over the registry's soupable candidates, registered
    (a soup made before is kept, not added twice); where none can be souped, said, and nothing made."""
    from .soup.build import make_soups   # lazy: torch

    try:
        report = make_soups(reg, data_dir, device=device, honest={"folds": 5, "repeats": 2, "seed": 0, "level": 0.95})
    except EnsembleError as e:
        if not str(e).startswith("no candidate can be souped"):
            raise
        progress.say(f"--soup: {e}; selecting without soups")
        return []
    for s in report.soups:
        progress.say(f"--soup: {','.join(s.tasks)}: greedy soup of {len(s.path.members)} -> candidate {s.candidate} "
                     f"(dev {s.path.score:.4f}; best single {s.best_single_score:.4f})")
    return [s.candidate for s in report.soups]


def _clean_interrupted(reg: Registry, runs: dict[str | None, list[Candidate]], head: str,
                       progress: Progress) -> None:
    """Remove the candidates of the runs that never finished (an interrupted training leaves the
    epochs it had kept), saying which and why; a finished run's candidates are never touched, nor
    one that a saved ensemble has as a member."""
    for run_id, cands in runs.items():
        if run_complete(cands):
            continue
        if run_id is None or not _has_folder(reg, run_id):   # no folder: no process can be training it
            _remove_interrupted(reg, run_id, cands, head, progress)
            continue
        try:
            with run_lock(reg.root, run_id):   # never the candidates of a run a live process trains
                _remove_interrupted(reg, run_id, cands, head, progress)
        except RunBusy as e:
            progress.say(f"{head}: kept the candidates of run {run_id}: {e.holder} is training it")


def _has_folder(reg: Registry, run_id: str) -> bool:
    try:
        return run_dir(reg.root, run_id).is_dir()
    except EnsembleError:
        return False


def _remove_interrupted(reg: Registry, run_id: str | None, cands: list[Candidate], head: str,
                        progress: Progress) -> None:
    """Remove ``cands``, the candidates of the unfinished run ``run_id`` (read again: under its lock,
    nobody else changes them; a run that finished meanwhile is left alone)."""
    if run_id is not None:
        cands = [c for c in reg.candidates() if c.run_id == run_id]
        if run_complete(cands):
            return
    removed = []
    for c in cands:
        used_by = reg.ensembles_naming(c.id)
        if used_by:
            progress.say(f"{head}: kept {c.id} ({c.name}) of the unfinished run {run_id}: a member of the saved "
                         f"ensemble{'s' if len(used_by) > 1 else ''} {', '.join(used_by)}")
        else:
            removed.append(reg.remove(c.id).id)
    if removed:
        progress.say(f"{head}: removed {', '.join(removed)}: the candidates of run {run_id}, which was "
                     "interrupted before it finished (never marked complete)")
