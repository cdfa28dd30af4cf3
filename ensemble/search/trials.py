"""``ensemble search`` on this machine: each trial one training run through
:func:`ensemble.registry.keeper.train_into` (the code of ``train`` and ``run``), its kept epochs
registered as candidates; the mean dev score of the trained tasks after each epoch goes to the
study's pruner, and a pruned trial stops after that epoch (:class:`~ensemble.registry.keeper.StopRun`),
keeping what it registered, its run record saying ``pruned`` and ``pruned_at``.

A trial's value is the best mean dev score over its epochs. ``--trials N`` is the size of the
study: a rerun with the same name first resumes the trials a killed search left RUNNING (their run
continued from its last epoch checkpoint, its epochs not reported twice), then asks for new ones
until the study holds N. A trial whose configuration is already complete in the registry (the
sampler drew it again) reuses that run (``same_as``) and spends no epoch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import EnsembleError
from ..files import fault_point
from ..progress import NULL, Progress
from ..registry.keeper import StopRun
from ..registry.runs import read_run, read_runs, run_dir, RECORD, write_run
from ..registry.store import Registry
from .space import Space
from .study import open_study, owner, stale

Event = Callable[[str, dict[str, Any]], None]   # (kind: start | epoch | end, the trial's row)


@dataclass
class SearchOptions:
    trials: int = 10
    name: str | None = None          # None: the space file's name
    timeout: float | None = None     # seconds after which no new trial starts
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int | None = None
    storage: str | None = None       # None: SQLite inside the registry
    device: str | None = None
    max_epochs: int | None = None    # an epoch budget: no new trial starts once the study's trials trained this many

    def study_name(self, space: Space) -> str:
        return self.name or space.name


def mean_dev(entry: dict[str, Any]) -> float:
    dev = entry["dev"]
    return sum(dev.values()) / len(dev)


def trial_row(t, space: Space) -> dict[str, Any]:
    """A trial as the table, ``--json`` and ``search show`` give it."""
    steps = t.intermediate_values
    return {"number": t.number, "state": t.state.name.lower(), "params": dict(t.params), "value": t.value,
            "epoch": max(steps) if steps else 0, "epochs": space.defaults.get("epochs", 10),
            "dev": {str(k): v for k, v in sorted(steps.items())}, "run_id": t.user_attrs.get("run_id"),
            "same_as": t.user_attrs.get("same_as"), "error": t.user_attrs.get("error"),
            "pruned_at": t.user_attrs.get("pruned_at"), "candidates": t.user_attrs.get("candidates", [])}


def run_search(registry: Registry, space: Space, data_dir: Path, opts: SearchOptions, progress: Progress = NULL,
               on_event: Event | None = None) -> dict[str, Any]:
    """Resume the study's stale trials, then run new ones until it holds ``opts.trials``; returns
    the summary (:func:`summary`)."""
    on_event = on_event or (lambda kind, row: None)
    name = opts.study_name(space)
    study = open_study(registry.root, name, space.to_dict(), url=opts.storage, sampler=opts.sampler,
                       pruner=opts.pruner, seed=opts.seed, epochs=space.defaults.get("epochs", 10))
    t0 = time.monotonic()
    for frozen in [t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING" and stale(t)]:
        progress.note(f"trial {frozen.number}: left running by a search that was stopped; resuming it")
        run_trial(study, _trial(study, frozen), space, registry, data_dir, opts, progress, on_event, resume=True)
    while len(study.get_trials(deepcopy=False)) < opts.trials:
        if opts.timeout is not None and time.monotonic() - t0 >= opts.timeout:
            progress.note(f"--timeout {opts.timeout:g} s reached: no new trial started")
            break
        if opts.max_epochs is not None and epochs_spent(study) >= opts.max_epochs:
            break
        run_trial(study, study.ask(), space, registry, data_dir, opts, progress, on_event)
    return summary(study, space, time.monotonic() - t0)


def _trial(study, frozen):
    import optuna  # the study exists: optuna is installed
    return optuna.trial.Trial(study, frozen._trial_id)


def run_trial(study, trial, space: Space, registry: Registry, data_dir: Path, opts: SearchOptions,
              progress: Progress, on_event: Event, resume: bool = False) -> None:
    """One trial: its configuration drawn (or read back, for a resumed trial), trained (``resume``:
    its unfinished run continued from its last epoch's checkpoint), told."""
    from ..registry.keeper import train_into  # lazy: torch

    for k, v in owner().items():
        trial.set_user_attr(k, v)
    cfg = space.sample(trial)
    row = _live_row(trial, cfg)
    on_event("start", row)
    reported = set(study._storage.get_trial(trial._trial_id).intermediate_values)

    def on_epoch(entry: dict[str, Any]) -> None:
        trial.set_user_attr("run_id", entry["run_id"])
        if entry["epoch"] not in reported:
            trial.report(mean_dev(entry), entry["epoch"])
        row.update(epoch=entry["epoch"], run_id=entry["run_id"])
        row["dev"][str(entry["epoch"])] = mean_dev(entry)
        on_event("epoch", row)
        if trial.should_prune():
            raise StopRun("pruned")

    extra = {"search": {"study": study.study_name, "trial": trial.number}}
    try:
        result = train_into(registry, cfg, data_dir, device=opts.device, progress=progress, resume=resume,
                            on_epoch=on_epoch, extra=extra)
    except EnsembleError as e:
        _failed(study, trial, registry, str(e).splitlines()[0], row, on_event)
        return
    tell(study, trial, registry, result.run_id, result.status, row)
    on_event("end", row)


def tell(study, trial, registry: Registry, run_id: str, status: str, row: dict[str, Any]) -> None:
    """Tell the study how the trial's run ended, read from the run's record (a run reused or
    resumed has its epochs there, not in this process)."""
    import optuna

    record = read_run(run_dir(registry.root, run_id) / RECORD)
    trial.set_user_attr("run_id", run_id)
    trial.set_user_attr("candidates", record.get("candidates") or [])
    mine = record.get("search") == {"study": study.study_name, "trial": trial.number}
    if not mine:
        trial.set_user_attr("same_as", record.get("search") or {"run_id": run_id})
    value = max((mean_dev({**e, "run_id": run_id}) for e in record["epochs"]), default=None)
    fault_point("search.tell")   # the kill tests stop here: the run finished, the study not yet told
    if record["status"] == "pruned":
        trial.set_user_attr("pruned_at", record.get("pruned_at"))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, value)
    row.update(state="pruned" if record["status"] == "pruned" else "complete", value=value,
               pruned_at=record.get("pruned_at"), candidates=record.get("candidates") or [], run_id=run_id,
               same_as=None if mine else trial.user_attrs.get("same_as"))


def _failed(study, trial, registry: Registry, error: str, row: dict[str, Any], on_event: Event) -> None:
    """A trial whose training raised: its run record (if it got one) says failed, the trial FAIL."""
    import optuna

    for record in read_runs(registry.root):
        if record.get("search") == {"study": study.study_name, "trial": trial.number} and record["status"] == "running":
            record.update(status="failed", error=error)
            write_run(registry.root, record)
    trial.set_user_attr("error", error)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    row.update(state="fail", error=error)
    on_event("end", row)


def _live_row(trial, cfg) -> dict[str, Any]:
    return {"number": trial.number, "state": "running", "params": dict(trial.params), "value": None, "epoch": 0,
            "epochs": cfg.epochs, "dev": {}, "run_id": None, "same_as": None, "error": None, "pruned_at": None,
            "candidates": [], "name": cfg.run_name}


def epochs_spent(study) -> int:
    """Epochs the study's trials trained (a reused trial's none): each trial's last reported epoch."""
    return sum(max(t.intermediate_values, default=0) for t in study.get_trials(deepcopy=False)
               if "same_as" not in t.user_attrs)


def summary(study, space: Space, seconds: float = 0.0) -> dict[str, Any]:
    """The study's trials, its best trial and configuration, the epochs spent and saved by pruning."""
    trials = [trial_row(t, space) for t in study.get_trials(deepcopy=False)]
    done = [t for t in trials if t["state"] == "complete"]
    best = max(done, key=lambda t: t["value"]) if done else None
    epochs = space.defaults.get("epochs", 10)
    spent = epochs_spent(study)
    pruned = [t for t in trials if t["state"] == "pruned"]
    return {"study": study.study_name, "space": space.to_dict(), "trials": trials,
            "states": {s: sum(t["state"] == s for t in trials) for s in ("complete", "pruned", "fail", "running")},
            "best": best and {"number": best["number"], "value": best["value"], "params": best["params"],
                              "config": space.config(best["params"]).to_dict(), "candidates": best["candidates"]},
            "epochs_spent": spent, "epochs_saved": sum(epochs - t["epoch"] for t in pruned), "seconds": seconds}
