"""Training runs' records in the registry: one folder per run, beside the candidates it produced.

Layout::

    <registry>/runs/<run_id>/record.json     the run's record (format below), rewritten atomically per epoch
    <registry>/runs/<run_id>/checkpoint/     the last completed epoch's training state (``train --resume``),
                                             removed when the run completes
    <registry>/runs/<run_id>/.lock           held (``flock``) by the one process training the run, new or
                                             resumed (:func:`run_lock`); its pid written inside. The kernel
                                             drops it when that process ends, even by SIGKILL

``record.json``::

    {"format": "ensemble-run/1", "run_id": str, "name": str (TrainConfig.run_name),
     "fingerprint": str, "config": TrainConfig.to_dict(), "data": {course file: sha256},
     "device": str, "precision": str, "parameters": int,
     "status": "running" | "complete" | "stopped" (early stopping by --patience)
               | "pruned" (stopped by a search's pruner) | "failed" (a search trial whose training raised),
     "pruned_at": epoch (pruned runs only),
     "search": {"study": str, "trial": int} (a search's trials only: the trial the run is),
     "started": iso time, "finished": iso time or null,
     "epochs": [{"epoch": int, "train_loss": {task: float}, "dev": {task: float}, "lr": float,
                 "seconds": float, "tokens": int, "tokens_per_second": float,
                 "candidate": candidate id or null, "best_for": [task, ...]}, ...],
     "candidates": [candidate id, ...]}      the run's surviving candidates once it completes

Storage only (no torch): the training code decides what goes in.
"""
from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .candidate import Candidate
from .. import documents
from ..errors import EnsembleError
from ..files import atomic_write_text
from .store import Registry
from ..tasks import is_plain_id

RUN_FORMAT = "ensemble-run/1"
RECORD = "record.json"
RUN_LOCK = ".lock"
STATUSES = ("running", "complete", "stopped", "pruned", "failed")


def runs_dir(root: Path) -> Path:
    return Path(root) / "runs"


def run_dir(root: Path, run_id: str) -> Path:
    if not isinstance(run_id, str) or not is_plain_id(run_id) or any(s in run_id for s in ("/", "\\", "..")):
        raise EnsembleError(f"run id {run_id!r}: expected a plain name (no '/', '..', commas, quotes or spaces)")
    return runs_dir(root) / run_id


class RunBusy(EnsembleError):
    """The run is being trained by another live process (its lock is held)."""

    def __init__(self, run_id: str, holder: str):
        self.run_id, self.holder = run_id, holder
        super().__init__(f"run {run_id} is being trained by {holder} right now (it holds runs/{run_id}/{RUN_LOCK}); "
                         "wait for it to end, then run the command again (nothing was changed)")


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


@contextmanager
def run_lock(root: Path, run_id: str, wait: bool = False) -> Iterator[None]:
    """Own the run ``run_id`` while the block runs: an exclusive ``flock`` on ``runs/<run_id>/.lock``
    (made when missing), this process's pid written in it. Held by another process: :class:`RunBusy`
    naming it, or with ``wait`` blocks until it is free. Released at the block's end, and by the
    kernel when the process dies (SIGKILL included): a dead owner never blocks a resume."""
    path = run_dir(root, run_id) / RUN_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise RunBusy(run_id, _holder(fd)) from None
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def run_owner(root: Path, run_id: str | None) -> str | None:
    """Who trains the run ``run_id`` now (``"process <pid>"``), or None: no live process holds its
    lock (finished, or killed: the kernel released it). Reads only; makes nothing."""
    if run_id is None:
        return None
    try:
        path = run_dir(root, run_id) / RUN_LOCK
    except EnsembleError:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(fd)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def write_run(root: Path, record: dict[str, Any]) -> Path:
    """Write (or replace) a run's record atomically; returns its path."""
    record = {"format": RUN_FORMAT, **record}
    if record.get("status") not in STATUSES:
        raise EnsembleError(f"run {record.get('run_id')}: status {record.get('status')!r}, expected one of {STATUSES}")
    path = run_dir(root, record["run_id"]) / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def read_run(path: Path) -> dict[str, Any]:
    """One record, checked by :class:`ensemble.documents.RunRecord` (the checked JSON object is
    returned: its readers index it); an error naming the file and the field."""
    checked, record = documents.read(path, documents.RunRecord, "a run record (`ensemble train` writes it)")
    if checked.run_id != Path(path).parent.name:
        raise EnsembleError(f"{path}: run_id: {checked.run_id!r} differs from its folder's name")
    for i, e in enumerate(checked.epochs):
        if set(e.dev) != set(e.train_loss):
            raise EnsembleError(f"{path}: epochs[{i}].dev: tasks {sorted(e.dev)}, expected those of its train_loss "
                                f"{sorted(e.train_loss)}")
    return record


def _scan(root: Path) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    d = runs_dir(root)
    records, damaged = [], []
    for p in sorted(d.iterdir()) if d.is_dir() else []:
        path = p / RECORD
        if not path.is_file() and not path.is_symlink():
            continue
        try:
            records.append(read_run(path))
        except EnsembleError as e:
            damaged.append((path, str(e)))
    return sorted(records, key=lambda r: (str(r.get("started") or ""), r["run_id"])), damaged


def read_runs(root: Path) -> list[dict[str, Any]]:
    """Every readable run record in the registry, oldest first (by start time, then id); none if no
    runs yet. A damaged record is set aside (:func:`damaged_runs` names it): it never blocks the
    other runs, their training or their reports."""
    return _scan(root)[0]


def damaged_runs(root: Path) -> list[tuple[Path, str]]:
    """The run records that cannot be read, each with why: set aside by :func:`read_runs`, named by
    ``verify`` and removed, with their run's folder, by ``verify --fix-runs`` (:func:`remove_damaged`)."""
    return _scan(root)[1]


def damaged_note(root: Path) -> str | None:
    """One line naming the damaged run records, and the fix, or None when there are none."""
    bad = damaged_runs(root)
    if not bad:
        return None
    names = ", ".join(str(p) for p, _ in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    return (f"set aside {len(bad)} damaged run record{'s' if len(bad) > 1 else ''} ({names}); `ensemble verify` "
            "says what is wrong, `ensemble verify --fix-runs` removes them")


def remove_damaged(root: Path) -> list[str]:
    """Remove the folder of each run whose record is damaged (the record and the checkpoint that
    needs it; the run's candidates are not touched), unless a live process holds the run: the
    names of the folders removed."""
    import shutil

    removed = []
    for path, _ in damaged_runs(root):
        folder = path.parent
        if folder.is_symlink() or not folder.is_dir():
            continue
        try:
            with run_lock(root, folder.name):
                shutil.rmtree(folder / "checkpoint", ignore_errors=True)
                for leftover in folder.iterdir():
                    if leftover.name != RUN_LOCK:
                        if leftover.is_dir() and not leftover.is_symlink():
                            shutil.rmtree(leftover, ignore_errors=True)
                        else:
                            leftover.unlink()
                (folder / RUN_LOCK).unlink()
            folder.rmdir()
        except (RunBusy, EnsembleError, OSError):
            continue
        removed.append(folder.name)
    return removed


def unfinished_run(root: Path, fingerprint: str) -> dict[str, Any] | None:
    """The latest record of a run with ``fingerprint`` that never ended (status "running"): a
    killed or interrupted ``train``, which ``train --resume`` continues."""
    running = [r for r in read_runs(root) if r.get("status") == "running" and r.get("fingerprint") == fingerprint]
    return running[-1] if running else None


def epoch_line(entry: dict[str, Any], tasks, epochs: int) -> str:
    """One permanent line per epoch: losses, dev scores (``*`` where best so far), their mean, the
    rate, time, throughput and the candidate it became."""
    best = set(entry.get("best_for") or [])
    losses = " ".join(f"{t} {entry['train_loss'][t]:.4f}" for t in tasks)
    dev = " ".join(f"{t} {entry['dev'][t]:.4f}{'*' if t in best else ''}" for t in tasks)
    mean = sum(entry["dev"][t] for t in tasks) / len(tasks)
    kept = f"candidate {entry['candidate']} (best for {', '.join(t for t in tasks if t in best)})" \
        if entry.get("candidate") else "no candidate"
    return (f"epoch {entry['epoch']}/{epochs}  loss {losses}  dev {dev}  mean {mean:.4f}  lr {entry['lr']:.3g}  "
            f"{entry['seconds']:.1f} s  {entry['tokens_per_second']:,.0f} tokens/s  {kept}")


# -- a configuration's runs, from its candidates' manifests ------------------------------------
def runs_of(registry: Registry, fingerprint: str) -> dict[str | None, list[Candidate]]:
    """The registry's candidates trained with ``fingerprint`` (same configuration, same data),
    grouped by the run that made them (``training.run_id``)."""
    runs: dict[str | None, list[Candidate]] = {}
    for c in registry.candidates() if registry.exists else []:
        if c.fingerprint == fingerprint:
            runs.setdefault(c.run_id, []).append(c)
    return runs


def run_complete(cands: list[Candidate]) -> bool:
    """Whether the run of ``cands`` finished: its end marks its survivors complete one by one, so a
    single mark means training ended (a kill among the marks leaves a finished run)."""
    return any(c.run_complete for c in cands)


def completed(registry: Registry, fingerprint: str) -> list[Candidate]:
    """The candidates of the finished runs with ``fingerprint``."""
    return [c for cands in runs_of(registry, fingerprint).values() if run_complete(cands) for c in cands]
