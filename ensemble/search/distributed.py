"""``ensemble search --engine ray``: Optuna's ask-and-tell driving the Ray engine of ``run``.

This process holds the study and the registry; each trial is one task of
:func:`ensemble.scale.worker.run_task`, the very task ``run --engine ray`` sends: the course files
shipped through Ray's object store, training in the worker's own folder with ``train_into``,
the kept candidates shipped back, checked and landed by :func:`ensemble.scale.driver.land`. After
each epoch the worker reports the epoch to the progress actor and waits for the driver's verdict:
the driver reports the trial's mean dev score to the study and answers "prune" where the pruner
says so. A worker or node that dies has its task retried by Ray (``--max-retries``); the retry
finds the verdicts already given and never reports an epoch twice. A killed search resumes: a
trial left RUNNING whose run landed is told from its record; one whose run never landed is trained
again from its start (nothing half-trained reaches the registry on this engine).

Why ask-and-tell and not Ray Tune: the registry is written by this one process only, through the
same checked landing as ``run``; the study stays Optuna's, in its database, whatever runs the
trials; Tune would add its own experiment state, trial folders and syncing beside both.
"""
from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..data import load_splits, split_hashes
from ..errors import EnsembleError
from ..registry.runs import completed, read_runs
from ..registry.store import Registry
from ..scale.driver import (RayOptions, _drain, _node_names, _reporter, _resources, base_files, course_files,
                            first_line, land, ray_session)
from ..scale.worker import run_task
from ..tasks import TASK_NAMES
from .space import Space
from .study import open_study, stale
from .trials import Event, SearchOptions, _failed, _live_row, _trial, mean_dev, summary, tell


def search_ray(registry: Registry, space: Space, data_dir: Path, opts: SearchOptions, ray_opts: RayOptions,
               parallel: int | None = None, on_event: Event | None = None) -> dict[str, Any]:
    """Run the study's missing trials as Ray tasks, ``parallel`` at a time (default: as many as the
    cluster fits); returns the summary of :func:`ensemble.search.trials.summary`."""
    on_event = on_event or (lambda kind, row: None)
    study = open_study(registry.root, opts.study_name(space), space.to_dict(), url=opts.storage,
                       sampler=opts.sampler, pruner=opts.pruner, seed=opts.seed,
                       epochs=space.defaults.get("epochs", 10))
    tasks = tuple(space.defaults.get("tasks", TASK_NAMES))
    hashes = split_hashes(load_splits(data_dir, tasks, ("train", "dev", "test")))
    t0 = time.monotonic()
    with ray_session(ray_opts) as ray:
        cpus, gpus, device = _resources(ray, ray_opts)
        have = ray.cluster_resources()
        slots = parallel or max(1, int(have.get("GPU", 0) // gpus if gpus else have.get("CPU", 1) // cpus))
        data_ref = ray.put(course_files(data_dir, [SimpleNamespace(tasks=tasks)]))
        base = space.defaults.get("base", "bert-base-uncased")
        files = base_files(base)
        base_ref = ray.put(files) if files is not None else None
        reporter = _reporter(ray)
        ray.get(reporter.drain.remote())
        task = ray.remote(run_task).options(num_cpus=cpus, num_gpus=gpus, max_retries=ray_opts.max_retries,
                                            retry_exceptions=False, runtime_env=ray_opts.runtime_env)
        run = Runner(ray, study, space, registry, hashes, task, reporter, data_ref, base_ref, device, cpus, on_event)
        try:
            waiting = [_trial(study, t) for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING" and stale(t)]
            while run.pending or waiting or len(study.get_trials(deepcopy=False)) < opts.trials:
                while len(run.pending) < slots and (waiting or _room(study, opts, t0)):
                    run.submit(waiting.pop(0) if waiting else study.ask())
                if not run.pending:
                    break
                run.follow(ray_opts)
        finally:
            for ref in run.pending:   # interrupted: nothing of ours runs on after us
                ray.cancel(ref, force=True)
            ray.kill(reporter)
    return summary(study, space, time.monotonic() - t0)


def _room(study, opts: SearchOptions, t0: float) -> bool:
    if opts.timeout is not None and time.monotonic() - t0 >= opts.timeout:
        return False
    return len(study.get_trials(deepcopy=False)) < opts.trials


class Runner:
    """The trials in flight: submitted as tasks, their epochs reported and judged, their ends landed."""

    def __init__(self, ray, study, space, registry, hashes, task, reporter, data_ref, base_ref, device, cpus, on_event):
        self.ray, self.study, self.space, self.registry, self.hashes = ray, study, space, registry, hashes
        self.task, self.reporter, self.data_ref, self.base_ref = task, reporter, data_ref, base_ref
        self.device, self.threads, self.on_event = device, max(1, int(cpus)), on_event
        self.pending: dict[Any, tuple[Any, dict[str, Any]]] = {}
        self.live: dict[str, tuple[Any, dict[str, Any]]] = {}
        self.nodes = _node_names(ray)

    def submit(self, trial) -> None:
        """One trial as a task; a trial whose run is already in the registry (a resumed search, the
        same configuration drawn again) is told from it instead."""
        from .study import owner

        for k, v in owner().items():
            trial.set_user_attr(k, v)
        cfg = self.space.sample(trial)
        row = _live_row(trial, cfg)
        self.on_event("start", row)
        landed = [r for r in read_runs(self.registry.root)
                  if r.get("search") == {"study": self.study.study_name, "trial": trial.number}
                  and r["status"] != "running"]
        done = completed(self.registry, cfg.fingerprint(self.hashes))
        if landed or done:
            run_id = landed[0]["run_id"] if landed else done[0].run_id
            tell(self.study, trial, self.registry, run_id, "", row)
            self.on_event("end", row)
            return
        key = f"trial-{trial.number}"
        extra = {"search": {"study": self.study.study_name, "trial": trial.number}}
        ref = self.task.remote(key, cfg.to_dict(), self.data_ref, self.base_ref, self.device, self.threads,
                               self.reporter, extra, True)
        self.pending[ref] = (trial, row)
        self.live[key] = (trial, row)

    def follow(self, opts: RayOptions) -> None:
        ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=opts.poll_seconds)
        for ev in _drain(self.ray, self.reporter):
            if ev["key"] in self.live:
                self._event(ev)
        for ref in ready:
            self._end(ref, opts)

    def _event(self, ev: dict[str, Any]) -> None:
        trial, row = self.live[ev["key"]]
        if ev["type"] == "start":
            node_id = ev["node"]["node_id"]
            if node_id not in self.nodes:
                self.nodes.update(_node_names(self.ray))
            row.update(node=self.nodes.get(node_id, node_id[:8]), node_id=node_id, attempts=row.get("attempts", 0) + 1)
            self.on_event("retry" if row["attempts"] > 1 else "node", row)
            return
        epoch = ev["epoch"]
        if epoch not in self.study._storage.get_trial(trial._trial_id).intermediate_values:
            trial.report(mean_dev(ev), epoch)
            trial.set_user_attr("run_id", ev["run_id"])
            verdict = "prune" if trial.should_prune() else "go"
            self.reporter.decide.remote(ev["key"], epoch, verdict)
        row.update(epoch=max(row["epoch"], epoch), run_id=ev["run_id"])
        row["dev"][str(epoch)] = mean_dev(ev)
        self.on_event("epoch", row)

    def _end(self, ref, opts: RayOptions) -> None:
        trial, row = self.pending.pop(ref)
        self.live.pop(f"trial-{trial.number}", None)
        ray = self.ray
        try:
            shipped = ray.get(ref)
            land(self.registry, shipped, row["name"])
            tell(self.study, trial, self.registry, shipped["result"]["run_id"], shipped["result"]["status"], row)
            self.on_event("end", row)
            return
        except ray.exceptions.RayTaskError as e:   # the trial's own code raised: not retried
            error = first_line(e)
        except ray.exceptions.RayError as e:
            error = f"{type(e).__name__}: its worker or node died {opts.max_retries + 1} times"
        except EnsembleError as e:
            error = str(e).splitlines()[0]
        _failed(self.study, trial, self.registry, error, row, self.on_event)
