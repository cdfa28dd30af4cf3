"""The worker side of ``ensemble run --engine ray``: one grid run as one Ray task.

No shared filesystem is assumed. The task gets the course files (and a local ``--base`` folder)
as bytes through Ray's object store, writes them into a temporary folder of its own, trains with
the very code of ``--engine local`` (:func:`ensemble.registry.keeper.train_into`) into a temporary
registry there, and returns each finished candidate's files (weights, manifest, cached
predictions) and the run's record as bytes; the driver (:mod:`ensemble.scale.driver`) checks and
registers them. The worker never learns the driver's paths; its folder is removed when it returns.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ..registry.candidate import MANIFEST
from ..errors import EnsembleError
from ..registry.manifest import SEAL, seal_of
from ..modeling.config import CONFIG_FILE
from ..progress import Progress
from ..registry.keeper import StopRun, train_into
from ..registry.store import Registry
from ..registry.runs import RECORD, run_dir

Files = dict[str, bytes]   # path relative to a folder -> content


class ToDriver(Progress):
    """A worker's progress: each ``"epoch"`` event goes to the driver's progress actor (``reporter``),
    as ``{"type": "epoch", "key": key, ...the epoch's entry}``; the rest stays here."""

    def __init__(self, reporter, key: str):
        self.reporter, self.key = reporter, key

    def event(self, event: dict[str, Any]) -> None:
        if event.get("kind") == "epoch":
            self.reporter.report.remote({"type": "epoch", "key": self.key,
                                         **{k: v for k, v in event.items() if k != "kind"}})


def read_files(folder: Path) -> Files:
    """Every file under ``folder`` as bytes, keyed by its relative POSIX path (symlinks refused)."""
    out: Files = {}
    for p in sorted(Path(folder).rglob("*")):
        if p.is_symlink():
            raise EnsembleError(f"{p}: a symlink; expected plain files only to ship")
        if p.is_file():
            out[p.relative_to(folder).as_posix()] = p.read_bytes()
    return out


def write_files(folder: Path, files: Files) -> Path:
    """Write shipped ``files`` under ``folder``; a name that would leave it is refused."""
    folder = Path(folder)
    for rel, data in files.items():
        parts = Path(rel).parts
        if not parts or Path(rel).is_absolute() or ".." in parts:
            raise EnsembleError(f"shipped file {rel!r}: expected a plain relative path")
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return folder


def _own_base_name(files: Files, copy: str, name: str) -> None:
    """Where the model's encoder config names this worker's copy of the base as where it was
    loaded from, the name the driver gave instead (as a local run records it), the manifest's
    sha256 and size of that file updated to match."""
    rel = f"model/{CONFIG_FILE}"
    if rel not in files:
        return
    config = json.loads(files[rel])
    if (config.get("encoder") or {}).get("_name_or_path") != copy:
        return
    config["encoder"]["_name_or_path"] = name
    files[rel] = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()   # as save_model writes it
    manifest = json.loads(files[MANIFEST])
    manifest["files"][rel] = {"sha256": hashlib.sha256(files[rel]).hexdigest(), "size": len(files[rel])}
    manifest[SEAL] = seal_of(manifest)
    files[MANIFEST] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()   # as write_manifest does


def _pack(reg: Registry, result, base_copy: str | None, base_name: str) -> dict[str, Any]:
    """The run's candidates (every file, manifest included) and its record, as bytes."""
    cands = [{"id": cid, "files": read_files(reg.candidates_dir / cid)} for cid in result.candidates]
    for c in cands if base_copy else []:
        _own_base_name(c["files"], base_copy, base_name)
    record = run_dir(reg.root, result.run_id) / RECORD
    return {"candidates": cands, "record": record.read_bytes() if record.is_file() else None}


def run_task(key: str, cfg: dict[str, Any], data: Files, base: Files | None, device: str, threads: int,
             reporter, extra: dict[str, Any] | None = None, verdicts: bool = False) -> dict[str, Any]:
    """Train one configuration in a folder of this worker's own and ship what it made.

    ``reporter``: the driver's progress actor (``report.remote(event)``), told when the run starts
    (on which node) and after every epoch. ``verdicts`` (a search): after each epoch the worker
    waits for the driver's verdict on it (``verdict.remote(key, epoch)``: "go" or "prune"); a
    pruned run ends there, shipping what it kept. ``extra``: fields for the run's record."""
    import ray   # lazy: only in a Ray worker
    import torch

    from ..modeling.bases import SHIPPED_BASES
    from ..training.config import TrainConfig

    t0 = time.time()
    ctx = ray.get_runtime_context()
    node = {"node_id": ctx.get_node_id(), "ip": ray.util.get_node_ip_address(), "pid": os.getpid()}
    reporter.report.remote({"type": "start", "key": key, "node": node, "time": t0})
    torch.set_num_threads(max(1, threads))
    config = TrainConfig(**cfg)
    with tempfile.TemporaryDirectory(prefix="ensemble-ray-") as tmp:
        data_dir = write_files(Path(tmp) / "data", data)
        copy = str(write_files(Path(tmp) / "base", base)) if base is not None else None
        if copy:
            SHIPPED_BASES[config.base] = copy
        try:
            reg = Registry(Path(tmp) / "registry")
            t1 = time.time()
            result = train_into(reg, config, data_dir, device=device, progress=ToDriver(reporter, key), extra=extra,
                                on_epoch=lambda e: _verdict(ray, reporter, key, e, verdicts))
            t2 = time.time()
            shipped = _pack(reg, result, copy, str(Path(config.base).expanduser()))
        finally:
            SHIPPED_BASES.pop(config.base, None)
    return {"key": key, "result": result.to_dict(), **shipped, "node": node,
            "times": {"started": t0, "setup": t1 - t0, "train": t2 - t1, "pack": time.time() - t2,
                      "returned": time.time()}}


def _verdict(ray, reporter, key: str, entry: dict[str, Any], verdicts: bool, poll: float = 0.1) -> None:
    """With ``verdicts`` (a search), the driver's verdict on the epoch just reported (:class:`ToDriver`)
    awaited: "prune" ends the run (a retried attempt gets the verdict already given at once)."""
    if not verdicts:
        return
    while (verdict := ray.get(reporter.verdict.remote(key, entry["epoch"]))) is None:
        time.sleep(poll)
    if verdict == "prune":
        raise StopRun("pruned")


def warm(seconds: float = 0.0) -> int:
    """A task that loads the training code (torch, transformers) into a worker process, so that
    a benchmark's timer measures runs rather than imports; returns the worker's pid."""
    from ..training import finetune as train  # noqa: F401  (the import is the point)

    time.sleep(seconds)
    return os.getpid()
