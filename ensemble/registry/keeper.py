"""Training epochs into candidates: the keeper that registers each epoch best on dev for some
task, keeps the run's record (:mod:`ensemble.registry.runs`) and says its line; :func:`train_into`,
which decides what a configuration needs (skip, a new run, continue the unfinished one: ``ensemble
train``, a Ray worker), and :func:`train_run`, the one way a run is trained into a registry
(``ensemble run``'s plan decides for itself, once, and calls it). It knows the registry;
:mod:`ensemble.training.finetune` does not.
"""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .candidate import Candidate, now_iso
from ..data import load_splits, split_hashes
from ..errors import EnsembleError, shown
from ..progress import NULL, Progress
from .register import model_manifest, predict_into
from .store import Registry
from .home import remember
from .runs import (RECORD, completed, damaged_note, damaged_runs, epoch_line, read_run, read_runs, run_dir, run_lock,
                   unfinished_run, write_run)
from ..training.loop_state import find as find_checkpoint, read_loop

if TYPE_CHECKING:
    from ..training.config import TrainConfig
    from ..training.finetune import EpochOutput, TrainResult, TrainRun


class StopRun(Exception):
    """Raised by an ``on_epoch`` hook to end the run after that epoch (its checkpoint written and its
    candidates kept): ``status`` goes into the run's record ("pruned": a search's pruner stopped it),
    with the epoch as ``pruned_at``."""

    def __init__(self, status: str = "pruned"):
        super().__init__(status)
        self.status = status


# -- training epochs into candidates ------------------------------------------------------------
def resumable(registry: Registry, fingerprint: str) -> tuple[dict[str, Any] | None, int]:
    """The unfinished run of ``fingerprint`` that ``--resume`` continues (its record, or None) and
    its last completed epoch (0: none completed, it starts again from the beginning)."""
    record = unfinished_run(registry.root, fingerprint)
    if record is None:
        return None, 0
    found = find_checkpoint(run_dir(registry.root, record["run_id"]) / "checkpoint")
    return record, (read_loop(found).epoch if found else 0)


def checkpoint_problems(registry: Registry, record: dict[str, Any], entries: Any, where: Path) -> list[str]:
    """How the checkpoint at ``where`` disagrees with its run (``record``, the run's record): its
    epochs (``entries``, the loop state's) must be the record's, or one more (a kill between the
    checkpoint and the record); each candidate it names as best for a task must be in the registry
    and of this run. Empty: it belongs to the run. Reads only."""
    run_id = record.get("run_id")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return [f"{where}: field 'loop.epochs': expected a list of epoch entries"]
    tasks = (record.get("config") or {}).get("tasks") if isinstance(record.get("config"), dict) else None

    def key(e: dict[str, Any]) -> tuple:
        return (e.get("epoch"), e.get("candidate"), tuple(e.get("best_for") or ()) if
                isinstance(e.get("best_for"), list) else e.get("best_for"))
    problems = []
    for i, e in enumerate(entries, 1):
        cid, best = e.get("candidate"), e.get("best_for")
        if e.get("epoch") != i or not (cid is None or isinstance(cid, str)) or not isinstance(best, list) \
                or not all(isinstance(t, str) and (tasks is None or t in tasks) for t in best):
            return [f"{where}: epoch entry #{i} {shown(key(e))}: expected epoch {i}, a candidate id or null and "
                    f"a list of its tasks; the checkpoint is not the one `ensemble train` wrote"]
    ours, theirs = [key(e) for e in entries], [key(e) for e in record.get("epochs") or [] if isinstance(e, dict)]
    if theirs not in (ours, ours[:-1]):
        problems.append(f"{where}: its epochs {[k[0] for k in ours]} disagree with the record of run {run_id} "
                        f"(epochs {[k[0] for k in theirs]}, other candidates or tasks); the checkpoint is not this run's")
    holders: dict[str, str] = {}
    for e in entries:
        for t in e["best_for"]:
            holders[t] = e["candidate"]
    present = {c.id: c for c in registry.candidates()} if registry.exists else {}
    for t, cid in sorted(holders.items()):
        if cid is None:
            problems.append(f"{where}: names no candidate for {t}, best in one of its epochs")
        elif cid not in present:
            problems.append(f"{where}: names candidate {shown(cid)} as best for {t}, which is not in the registry")
        elif present[cid].run_id != run_id:
            problems.append(f"{where}: names candidate {cid} as best for {t}, a candidate of run "
                            f"{present[cid].run_id}, not of run {run_id}")
    return problems


def check_checkpoint(registry: Registry, record: dict[str, Any], entries: Any, where: Path) -> None:
    """:func:`checkpoint_problems` as an error, before a resume changes anything."""
    problems = checkpoint_problems(registry, record, entries, where)
    if problems:
        raise EnsembleError(f"refusing to resume run {record.get('run_id')} from a checkpoint that is not its own "
                            "(nothing was changed):\n  " + "\n  ".join(problems)
                            + "\n`ensemble train` without --resume trains the configuration again from the start")


class EpochKeeper:
    """Turns training epochs into candidates and keeps the run's record (:mod:`ensemble.registry.runs`):
    an epoch best on dev for some task so far is registered (its model, dev predictions and
    freshly computed test predictions); once the epoch's checkpoint is written, its entry goes
    into the record, one line is printed, and a candidate of the run no longer best for any task
    is removed, and an ``"epoch"`` event reported (:mod:`ensemble.progress`); :meth:`finish`
    marks the survivors complete."""

    def __init__(self, registry: Registry, progress: Progress = NULL, record: dict | None = None,
                 data_dir: Path | None = None, on_epoch=None, extra: dict | None = None):
        self.registry = registry
        self.data_dir = data_dir                    # recorded as the registry's data with its first candidate
        self.on_epoch = on_epoch                    # a hook that may end the run (StopRun: a search's pruner)
        self.extra = extra or {}                    # fields added to the record (a search's trial)
        self.progress = progress
        self.record = record or {}                  # a resumed run's: its start time carries over
        self.holders: dict[str, str] = {}           # task -> candidate id currently best for it (set by start)
        self.own: Callable[[], Any] | None = None   # takes the run's lock, at start, for a new run

    def start(self, run: TrainRun, done: list) -> None:
        """The record of a starting (or resumed) run, with the epochs already completed."""
        if self.own is not None:
            self.own()
        if done:   # a resumed run: its checkpoint must be its own before anything is changed
            on_disk = read_run(run_dir(self.registry.root, run.run_id) / RECORD)
            check_checkpoint(self.registry, on_disk, [e.entry() for e in done],
                             run_dir(self.registry.root, run.run_id) / "checkpoint")
        self.record = {"run_id": run.run_id, "name": run.config.run_name, "fingerprint": run.fingerprint,
                       "config": run.config.to_dict(), "data": run.data, "device": str(run.device),
                       "precision": run.precision, "parameters": run.parameters, "status": "running",
                       "started": self.record.get("started") or now_iso(), "finished": None,
                       "epochs": [e.entry() for e in done], "candidates": [], **self.extra}
        self.holders = {}
        for e in done:
            for t in e.best_for:
                self.holders[t] = e.candidate
        self.registry.ensure()   # a run killed before its first candidate still leaves a registry `list` opens
        write_run(self.registry.root, self.record)
        self.tidy(run.run_id)

    def keep(self, run: TrainRun, epoch: EpochOutput) -> None:
        if not epoch.result.best_for:
            return
        cand = self.registry.add(lambda stage: self._build(run, epoch, stage))
        if self.data_dir is not None:
            remember(self.registry, self.data_dir)
        epoch.result.candidate = cand.id
        for t in epoch.result.best_for:
            self.holders[t] = cand.id

    def committed(self, run: TrainRun, result) -> None:
        """After the epoch's checkpoint: its record entry, its line, the superseded candidates removed."""
        entry = result.entry()
        self.record["epochs"].append(entry)
        write_run(self.registry.root, self.record)
        self.progress.say(epoch_line(entry, run.config.tasks, run.config.epochs))
        self.tidy(run.run_id)
        self.progress.event({"kind": "epoch", **entry, "run_id": run.run_id, "name": run.config.run_name})
        if self.on_epoch:
            self.on_epoch({**entry, "run_id": run.run_id, "name": run.config.run_name})

    def tidy(self, run_id: str) -> None:
        """Remove the run's candidates that hold no task: superseded epochs, and those of an epoch
        a kill cut short before its checkpoint (a resumed run does that epoch again). One that a
        saved ensemble names is kept, and said."""
        live = set(self.holders.values())
        for c in self.registry.candidates() if self.registry.exists else []:
            if c.run_id != run_id or c.id in live:
                continue
            try:
                self.registry.remove(c.id)
            except EnsembleError as e:
                self.progress.note(f"kept {c.id} ({c.name}), no longer best for any task of its run: {e}")

    def _build(self, run: TrainRun, epoch: EpochOutput, stage: Path) -> dict[str, Any]:
        cfg = run.config
        epoch.save(stage / "model")
        preds, metrics = predict_into(stage, epoch.model, epoch.tokenizer, cfg.tasks, run.splits, run.device,
                                      run.precision, cache=run.cache, known=epoch.dev_predictions,
                                      progress=self.progress)
        self.progress.stop()
        training = {"config": cfg.to_dict(), "epoch": epoch.result.epoch, "run_id": run.run_id,
                    "fingerprint": run.fingerprint, "data": run.data, "best_for": epoch.result.best_for,
                    "run_complete": False, "base_provenance": run.base_provenance}
        return model_manifest(f"{cfg.run_name}-e{epoch.result.epoch}", run.model_config, run.parameters, training,
                              run.precision, preds, metrics)

    def finish(self, tasks, status: str = "complete") -> list[str]:
        """Mark the run's surviving candidates complete, each with the tasks it is best for; then
        the record (``status``: complete, stopped by --patience, or pruned after its last epoch)."""
        final = sorted(set(self.holders.values()))
        for cid in final:
            held = [t for t in tasks if self.holders.get(t) == cid]

            def mark(m: dict[str, Any], held=held) -> None:
                m["training"]["run_complete"] = True
                m["training"]["best_for"] = held
            self.registry.update_manifest(cid, mark)
        self.record.update(status=status, finished=now_iso(), candidates=final)   # start() always ran
        if status == "pruned":
            self.record["pruned_at"] = self.record["epochs"][-1]["epoch"]
        write_run(self.registry.root, self.record)
        return final


def run_problems(registry: Registry) -> list[tuple[str, str, str]]:
    """What ``verify`` finds in the runs: (run, file, problem) for each damaged record and for each
    unfinished run's checkpoint that is unreadable or not its own (:func:`checkpoint_problems`)."""
    out = [(f"run {path.parent.name}", str(path), msg) for path, msg in damaged_runs(registry.root)]
    for record in read_runs(registry.root):
        if record.get("status") != "running":
            continue
        found = find_checkpoint(run_dir(registry.root, record["run_id"]) / "checkpoint")
        if found is None:
            continue
        try:
            entries = read_loop(found).epochs
        except EnsembleError as e:
            out.append((f"run {record['run_id']}", str(found), str(e)))
            continue
        out += [(f"run {record['run_id']}", str(found), m) for m in checkpoint_problems(registry, record, entries, found)]
    return out


def train_into(registry: Registry, cfg: TrainConfig, data_dir: Path, device: str | None = None,
               progress: Progress = NULL, *, resume: bool = False, again: bool = False,
               on_epoch=None, extra: dict | None = None) -> TrainResult:
    """Train ``cfg`` and register every epoch that is best on dev for some task (``ensemble train``'s,
    a search trial's and a Ray worker's entry point to training), keeping the run's record in
    ``<registry>/runs/``.

    A configuration already complete in the registry (same fingerprint) is skipped, naming its
    candidates (``status`` "skipped"), unless ``again``. The configuration's unfinished run (an
    interrupted one) is continued from its last completed epoch, ``resume`` or not, unless ``again``
    (a new run beside it). Each committed epoch is reported to ``progress`` as an ``"epoch"`` event:
    its record entry (:mod:`ensemble.registry.runs`) with ``run_id`` and ``name``. ``on_epoch(entry)``
    gets the same entry and may raise :class:`StopRun` to end the run after that epoch (a search's
    pruner), as a finished run with that status. ``extra``: fields added to the run's record (a
    search's ``{"search": {"study", "trial"}}``)."""
    from ..training.finetune import TrainResult  # lazy: torch

    fp = cfg.fingerprint(split_hashes(load_splits(data_dir, cfg.tasks, ("train", "dev", "test"))))
    damaged = damaged_note(registry.root)
    if damaged:
        progress.note(damaged)
    done = [] if again else completed(registry, fp)
    if done:
        close_records(registry, done)
        progress.note(f"{cfg.run_name}: already complete in the registry ({', '.join(sorted(c.id for c in done))}); skipped "
                      "(`--again` trains it anyway; for a new seed change --seed)")
        return TrainResult(cfg, done[0].run_id, done[0].parameters or 0, [],
                           {}, "", candidates=sorted(c.id for c in done), status="skipped")
    record, epoch = resumable(registry, fp)
    if record is None and resume:
        progress.note(f"{cfg.run_name}: --resume: no unfinished run of this configuration; training a new run")
    elif record is not None and again:
        progress.note(f"{cfg.run_name}: run {record['run_id']} of this configuration is unfinished ({epoch} of "
                      f"{cfg.epochs} epochs done); --again: training a new run beside it")
        record = None
    return train_run(registry, cfg, data_dir, record, epoch, device=device, progress=progress, on_epoch=on_epoch,
                     extra=extra)


def train_run(registry: Registry, cfg: TrainConfig, data_dir: Path, record: dict[str, Any] | None = None,
              epoch: int = 0, *, device: str | None = None, progress: Progress = NULL, on_epoch=None,
              extra: dict | None = None) -> TrainResult:
    """Train ``cfg`` into the registry as decided (by :func:`train_into`, or by ``ensemble run``'s
    plan): a new run, or with ``record`` the configuration's unfinished run (:func:`resumable`),
    continued after its last completed epoch ``epoch`` (from the start where that is 0); ``on_epoch``
    and ``extra`` as :func:`train_into` takes them. The run is owned while it trains
    (:func:`~ensemble.registry.runs.run_lock`): a second process resuming it is refused, naming the
    first, and nothing of the run is changed by it."""
    from ..training import checkpoint as ckpt  # lazy: torch
    from ..training.finetune import EpochResult, TrainResult, train  # lazy: torch

    if record is not None:
        progress.note(f"{cfg.run_name}: resuming run {record['run_id']} after epoch {epoch} of {cfg.epochs} (`--again` "
                      "trains a new run instead)" if epoch else f"{cfg.run_name}: run {record['run_id']} completed no epoch; starting it again")
    run_id = record["run_id"] if record else registry.new_id()
    folder = run_dir(registry.root, run_id) / "checkpoint"
    with ExitStack() as owned:   # one owner: another live process training the run is named, nothing changed
        if record is not None:
            owned.enter_context(run_lock(registry.root, run_id))
            now = read_run(run_dir(registry.root, run_id) / RECORD)
            if now.get("status") != "running":
                raise EnsembleError(f"run {run_id} ended ({now.get('status')}) while this command was starting; "
                                    "run the command again (nothing was changed)")
        keeper = EpochKeeper(registry, progress, record, data_dir, on_epoch, extra)
        if record is None:   # a new run is owned from its start (its first write), after the checks that precede it
            keeper.own = lambda: owned.enter_context(run_lock(registry.root, run_id))
        try:
            result = train(cfg, data_dir, keeper.keep, run_id, device=device, progress=progress, checkpoint_dir=folder,
                           resume=record is not None, on_start=keeper.start, after_checkpoint=keeper.committed)
        except StopRun as stop:
            rec = keeper.record
            epochs = [EpochResult(**{k: v for k, v in e.items() if k != "tokens_per_second"}) for e in rec["epochs"]]
            result = TrainResult(cfg, run_id, rec["parameters"], epochs, {}, rec["device"], status=stop.status)
        result.candidates = keeper.finish(cfg.tasks, result.status)
        ckpt.remove(folder)
    return result


def close_records(registry: Registry, done: list[Candidate]) -> None:
    """The runs of the finished candidates ``done`` whose records still say "running" (killed after
    the candidates were marked complete, before the record said so): the record is completed and
    the checkpoint it no longer needs removed."""
    from ..training import checkpoint as ckpt  # lazy: torch

    run_ids = {c.run_id for c in done}
    for record in read_runs(registry.root):
        if record["run_id"] in run_ids and record.get("status") == "running":
            record.update(status="complete", finished=record.get("finished") or now_iso(),
                          candidates=sorted(c.id for c in done if c.run_id == record["run_id"]))
            write_run(registry.root, record)
            ckpt.remove(run_dir(registry.root, record["run_id"]) / "checkpoint")
