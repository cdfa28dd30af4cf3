"""Training epochs into candidates: the keeper that registers each epoch best on dev for some
task, keeps the run's record (:mod:`ensemble.registry.runs`) and prints its line, and :func:`train_into`,
the one entry point of a training run into a registry (``ensemble train``, ``ensemble run`` on
either engine). It knows the registry; :mod:`ensemble.training.finetune` does not.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .candidate import Candidate, now_iso
from ..data import load_splits, split_hashes
from ..errors import EnsembleError
from ..progress import NULL, Progress
from .register import model_manifest, predict_into
from .store import Registry
from .runs import completed, epoch_line, read_runs, run_dir, unfinished_run, write_run

if TYPE_CHECKING:
    from ..training.config import TrainConfig
    from ..training.finetune import EpochOutput, TrainResult, TrainRun


# -- training epochs into candidates ------------------------------------------------------------
def resumable(registry: Registry, fingerprint: str) -> tuple[dict[str, Any] | None, int]:
    """The unfinished run of ``fingerprint`` that ``--resume`` continues (its record, or None) and
    its last completed epoch (0: none completed, it starts again from the beginning)."""
    from ..training import checkpoint as ckpt  # lazy: torch

    record = unfinished_run(registry.root, fingerprint)
    if record is None:
        return None, 0
    found = ckpt.find(run_dir(registry.root, record["run_id"]) / "checkpoint")
    return record, (ckpt.read_loop(found)["epoch"] if found else 0)


class EpochKeeper:
    """Turns training epochs into candidates and keeps the run's record (:mod:`ensemble.registry.runs`):
    an epoch best on dev for some task so far is registered (its model, dev predictions and
    freshly computed test predictions); once the epoch's checkpoint is written, its entry goes
    into the record, one line is printed, and a candidate of the run no longer best for any task
    is removed; :meth:`finish` marks the survivors complete."""

    def __init__(self, registry: Registry, progress: Progress = NULL, on_epoch=None, record: dict | None = None):
        self.registry = registry
        self.progress = progress
        self.on_epoch = on_epoch
        self.record = record or {}                  # a resumed run's: its start time carries over
        self.holders: dict[str, str] = {}           # task -> candidate id currently best for it (set by start)

    def start(self, run: TrainRun, done: list) -> None:
        """The record of a starting (or resumed) run, with the epochs already completed."""
        self.record = {"run_id": run.run_id, "name": run.config.run_name, "fingerprint": run.fingerprint,
                       "config": run.config.to_dict(), "data": run.data, "device": str(run.device),
                       "precision": run.precision, "parameters": run.parameters, "status": "running",
                       "started": self.record.get("started") or now_iso(), "finished": None,
                       "epochs": [e.entry() for e in done], "candidates": []}
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
        the record (``status``: complete, or stopped by --patience)."""
        final = sorted(set(self.holders.values()))
        for cid in final:
            held = [t for t in tasks if self.holders.get(t) == cid]

            def mark(m: dict[str, Any], held=held) -> None:
                m["training"]["run_complete"] = True
                m["training"]["best_for"] = held
            self.registry.update_manifest(cid, mark)
        self.record.update(status=status, finished=now_iso(), candidates=final)   # start() always ran
        write_run(self.registry.root, self.record)
        return final


def train_into(registry: Registry, cfg: TrainConfig, data_dir: Path, device: str | None = None,
               progress: Progress = NULL, *, resume: bool = False, again: bool = False,
               on_epoch=None) -> TrainResult:
    """Train ``cfg`` and register every epoch that is best on dev for some task (the CLI's and
    runner's one entry point to training), keeping the run's record in ``<registry>/runs/``.

    A configuration already complete in the registry (same fingerprint) is skipped, naming its
    candidates (``status`` "skipped"), unless ``again``. The configuration's unfinished run (an
    interrupted one) is continued from its last completed epoch, ``resume`` or not, unless ``again``
    (a new run beside it). ``on_epoch(entry)`` gets each epoch's record
    entry (:mod:`ensemble.registry.runs`) with ``run_id`` and ``name`` added."""
    from ..training import checkpoint as ckpt  # lazy: torch
    from ..training.finetune import TrainResult, train  # lazy: torch

    fp = cfg.fingerprint(split_hashes(load_splits(data_dir, cfg.tasks, ("train", "dev", "test"))))
    done = [] if again else completed(registry, fp)
    if done:
        close_records(registry, done)
        progress.note(f"{cfg.run_name}: already complete in the registry ({', '.join(sorted(c.id for c in done))}); skipped "
                      "(`--again` trains it anyway; for a new seed change --seed)")
        return TrainResult(cfg, done[0].run_id, done[0].parameters or 0, [],
                           {}, "", candidates=sorted(c.id for c in done), status="skipped")
    record, epoch = resumable(registry, fp)
    if record is not None and resume:
        progress.note(f"{cfg.run_name}: resuming run {record['run_id']} after epoch {epoch} of {cfg.epochs}"
                      if epoch else f"{cfg.run_name}: run {record['run_id']} completed no epoch; starting it again")
    elif resume:
        progress.note(f"{cfg.run_name}: --resume: no unfinished run of this configuration; training a new run")
    elif record is not None and again:
        progress.note(f"{cfg.run_name}: run {record['run_id']} of this configuration is unfinished ({epoch} of "
                      f"{cfg.epochs} epochs done); --again: training a new run beside it")
        record = None
    elif record is not None:   # a rerun after an interrupt continues the run instead of training a duplicate
        progress.note(f"{cfg.run_name}: run {record['run_id']} of this configuration is unfinished; resuming it after "
                      f"epoch {epoch} of {cfg.epochs} (`--again` trains a new run instead)" if epoch else
                      f"{cfg.run_name}: run {record['run_id']} of this configuration completed no epoch; starting it "
                      "again")
    run_id = record["run_id"] if record else registry.new_id()
    folder = run_dir(registry.root, run_id) / "checkpoint"
    keeper = EpochKeeper(registry, progress, on_epoch, record)
    result = train(cfg, data_dir, keeper.keep, run_id, device=device, progress=progress, checkpoint_dir=folder,
                   resume=record is not None, on_start=keeper.start, after_checkpoint=keeper.committed)
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
