"""``ensemble run``: the main job in one call, from a data folder to a validated submission.

Trains a grid (a grid file's or a preset's configurations, :mod:`ensemble.scale.grid`): a configuration
with a run already finished on the same data is skipped; its unfinished run continues from its last
completed epoch, the candidates of its other interrupted runs are removed, so an interrupted
``ensemble run`` resumes where it stopped. Here, one after another (``engine=None``), or on Ray
(:mod:`ensemble.scale.driver`: an unfinished run starts again there, from the start). Then selects
per task, writes the six leaderboard files, validates them and zips a submission.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from . import workflow
from .registry.candidate import Candidate
from .data import load_splits, resolve_data, split_hashes
from .errors import EnsembleError
from .scale.grid import load_grid, load_preset
from .progress import NULL, Progress
from .scale.driver import RayOptions, train_grid
from .registry.keeper import close_records, resumable, train_into
from .registry.runs import run_complete, runs_of
from .registry.store import Registry
from .leaderboard.submission import checked_files, ensemble_record, pack
from .tasks import TASK_NAMES
from .training.config import TrainConfig
from .selection import DEFAULT_MODE


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


def grid_configs(data: Path | None, base: str | None, preset: str | None, grid: Path | None
                 ) -> tuple[list[TrainConfig], str, Path, bool]:
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
    data_dir, sample = resolve_data(data)
    if sample and grid is None:  # a preset on the tiny sample: all of it, more epochs (a grid file is as written)
        configs = [replace(c, limit=None, epochs=max(c.epochs, 3)) for c in configs]
    return configs, name, data_dir, sample


def plan(reg: Registry, configs: list[TrainConfig], data_dir: Path) -> list[dict[str, Any]]:
    """Each configuration's name, fingerprint and what the registry holds of it: the candidates of
    its finished runs (``registered``: it is skipped) and of its interrupted ones, and those runs
    (``runs``: run id -> candidates). Reads only; the data files are hashed once per task set."""
    hashes: dict[tuple[str, ...], dict[str, str]] = {}
    rows = []
    for cfg in configs:
        if cfg.tasks not in hashes:
            hashes[cfg.tasks] = split_hashes(load_splits(data_dir, cfg.tasks, ("train", "dev", "test")))
        fp = cfg.fingerprint(hashes[cfg.tasks])
        runs = runs_of(reg, fp)
        rows.append({"name": cfg.run_name, "fingerprint": fp, "config": cfg, "runs": runs,
                     "registered": [c.id for cands in runs.values() if run_complete(cands) for c in cands],
                     "interrupted": [c.id for cands in runs.values() if not run_complete(cands) for c in cands]})
    return rows


def dry_run(data: Path | None, base: str | None, preset: str | None, grid: Path | None,
            registry: Path) -> dict[str, Any]:
    """``run --dry-run``: the runs, their fingerprints, and which are already in the registry."""
    configs, name, data_dir, sample = grid_configs(data, base, preset, grid)
    rows = plan(Registry(registry), configs, data_dir)
    return {"grid": name, "data": str(data_dir), "sample": sample,
            "runs": [{**{k: v for k, v in r.items() if k not in ("config", "runs")}, "config": r["config"].to_dict(),
                      "status": "registered" if r["registered"] else "to train"} for r in rows]}


def train_ray(reg: Registry, configs: list[TrainConfig], data_dir: Path, engine: RayOptions, say,
              on_event=None) -> dict[str, Any]:
    """The grid on Ray (:func:`ensemble.scale.driver.train_grid`): what is registered is skipped,
    the leftovers of interrupted runs cleaned up first (as ``--engine local`` does)."""
    rows = plan(reg, configs, data_dir)
    todo, skipped = [], []
    for i, row in enumerate(rows, 1):
        head = f"[{i}/{len(rows)}] {row['name']}"
        _clean_interrupted(reg, row["runs"], head, say)   # first, as --engine local does: also beside a finished run
        if row["registered"]:
            close_records(reg, [c for cands in row["runs"].values() if run_complete(cands) for c in cands])
            skipped.append(row["name"])
            say(f"{head}: already in the registry ({', '.join(row['registered'])}); skipped")
            continue
        todo.append((row["fingerprint"], row["config"]))
    summary = (train_grid(reg, todo, data_dir, engine, on_event) if todo else
               {"engine": "ray", "runs": [], "done": [], "retried": [], "failed": [], "seconds": 0.0,
                "startup_seconds": 0.0, "runs_seconds": 0.0})
    return {**summary, "skipped": skipped}


def run(data: Path | None, base: str | None, preset: str | None, registry: Path, out: Path, submissions: Path,
        device: str | None = None, progress: Progress | None = None, on_trained=None, on_message=None,
        mode: str = DEFAULT_MODE, system: str = "auto", grid: Path | None = None,
        engine: RayOptions | None = None, on_event=None, soup: bool = False) -> dict[str, Any]:
    """Train the grid file's or the preset's runs (skipping what is done) here, or on Ray with
    ``engine``; select with ``mode``, write, validate and zip. ``system="auto"`` submits, per task,
    the better system by the held-out estimate (the choice and its reason are printed and recorded
    in the submission's manifest); "ensemble" always the ensemble. Where a Ray run failed, nothing
    is selected: the result names the failed runs (``failed``) and a rerun trains only them. ``soup``:
    the greedy soups of the registry's candidates are made first (:func:`soup_into`) and join selection."""
    t0 = time.perf_counter()
    say = on_message or (lambda m: None)
    progress = progress or NULL
    configs, name, data_dir, sample = grid_configs(data, base, preset, grid)
    if sample:
        say(f"[bold magenta]SAMPLE DATA:[/] no --data and no ./data, so using the sample shipped in the package "
            f"({data_dir}); its scores mean nothing")
    reg = Registry(registry)
    summary = None
    if engine is None:
        trained, skipped = _train_all(reg, configs, data_dir, device, progress, on_trained, say)
    else:
        summary = train_ray(reg, configs, data_dir, replace(engine, device=device or engine.device), say, on_event)
        trained = [r for r in summary["runs"] if r["status"] == "done"]
        skipped = summary["skipped"]
        if summary["failed"]:
            return {"selection": None, "trained": trained, "skipped": skipped, "failed": summary["failed"],
                    "grid": summary, "sample": sample, "seconds": time.perf_counter() - t0}
    if soup:
        soup_into(reg, data_dir, device, say)
    report = workflow.select(reg, data_dir, TASK_NAMES, mode, name=f"run-{name}", sample=sample, system=system)
    pred = workflow.predict(reg, data_dir, out, report.name)
    found = checked_files(out, data_dir)   # the six files validated once, for the zip as for `submit`
    record = {**ensemble_record(out, found, sample), "preset": name, "mode": mode, "system": system}
    mean = sum(pred["dev_scores"].values()) / len(pred["dev_scores"]) if pred["dev_scores"] else None
    zip_path = pack(found, submissions, record, mean)
    return {"selection": report, "trained": trained, "skipped": skipped, "failed": [], "grid": summary,
            "written": pred["written"], "dev_scores": pred["dev_scores"], "submission": str(zip_path),
            "sample": sample, "seconds": time.perf_counter() - t0}


def soup_into(reg: Registry, data_dir: Path, device: str | None, say) -> list[str]:
    """``run --soup``: the greedy soup of each task over the registry's soupable candidates, registered
    (a soup made before is kept, not added twice); where none can be souped, said, and nothing made."""
    from .soup.build import make_soups   # lazy: torch

    try:
        report = make_soups(reg, data_dir, device=device, honest={"folds": 5, "repeats": 2, "seed": 0, "level": 0.95})
    except EnsembleError as e:
        if not str(e).startswith("no candidate can be souped"):
            raise
        say(f"--soup: {e}; selecting without soups")
        return []
    for s in report.soups:
        say(f"--soup: {','.join(s.tasks)}: greedy soup of {len(s.path.members)} -> candidate {s.candidate} "
            f"(dev {s.path.score:.4f}; best single {s.best_single_score:.4f})")
    return [s.candidate for s in report.soups]


def _train_all(reg: Registry, configs: list[TrainConfig], data_dir: Path, device: str | None, progress: Progress,
               on_trained, say) -> tuple[list[dict[str, Any]], list[str]]:
    """Train each configuration into the registry, skipping one with a run already finished on the
    same data, resuming its unfinished run from that run's last completed epoch (``train
    --resume``), and cleaning up its other interrupted runs (:func:`_clean_interrupted`); returns
    (the trained runs' results, the skipped run names)."""
    trained, skipped = [], []
    for i, row in enumerate(plan(reg, configs, data_dir), 1):
        cfg, fp, runs = row["config"], row["fingerprint"], row["runs"]
        head = f"[{i}/{len(configs)}] {cfg.run_name}"
        done = [c for cands in runs.values() if run_complete(cands) for c in cands]
        unfinished, epoch = resumable(reg, fp)
        go_on = unfinished["run_id"] if unfinished is not None and epoch and not done else None
        _clean_interrupted(reg, {k: v for k, v in runs.items() if k != go_on}, head, say)
        if done:
            close_records(reg, done)
            skipped.append(cfg.run_name)
            say(f"{head}: already in the registry ({', '.join(c.id for c in done)}); skipped")
            continue
        if go_on:
            say(f"[{i}/{len(configs)}] resuming {cfg.run_name}: run {go_on} after epoch {epoch} of {cfg.epochs}")
        else:
            say(f"[{i}/{len(configs)}] training {cfg.run_name}")
        t1 = time.perf_counter()
        result = train_into(reg, cfg, data_dir, device=device, progress=progress, resume=unfinished is not None)
        progress.stop()
        trained.append(result.to_dict())
        if on_trained:
            on_trained(result, time.perf_counter() - t1)
    return trained, skipped


def _clean_interrupted(reg: Registry, runs: dict[str | None, list[Candidate]], head: str, say) -> None:
    """Remove the candidates of the runs that never finished (an interrupted training leaves the
    epochs it had kept), saying which and why; a finished run's candidates are never touched, nor
    one that a saved ensemble has as a member."""
    for run_id, cands in runs.items():
        if run_complete(cands):
            continue
        removed = []
        for c in cands:
            used_by = reg.ensembles_naming(c.id)
            if used_by:
                say(f"{head}: kept {c.id} ({c.name}) of the unfinished run {run_id}: a member of the saved "
                    f"ensemble{'s' if len(used_by) > 1 else ''} {', '.join(used_by)}")
            else:
                removed.append(reg.remove(c.id).id)
        if removed:
            say(f"{head}: removed {', '.join(removed)}: the candidates of run {run_id}, which was interrupted "
                "before it finished (never marked complete)")
