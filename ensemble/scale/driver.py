"""The driver side of ``ensemble run --engine ray``: a grid's runs as Ray tasks, one registry back.

Ray starts here (one run per GPU, or per ``cpus_per_run`` CPUs where there is none) or is joined
at ``address`` (or ``RAY_ADDRESS``). The course files, and a local ``--base`` folder, are put in
Ray's object store once; each run is one task (:func:`ensemble.scale.worker.run_task`) that trains
in a folder of its own and ships its finished candidates back as bytes. No shared filesystem is
assumed, and only this process writes the registry: every shipped file is checked against the
sha256 in its shipped manifest, then the candidate is added through the registry's one atomic path
(:meth:`ensemble.registry.store.Registry.add`: staging folder, hashes, one rename), unmarked; the run's
record is written; then its candidates are marked complete, as a local run marks them. Nothing
half-trained ever reaches the registry: a run that dies leaves nothing in it.

Faults: a run whose code raises fails once (``retry_exceptions=False``) with the first line of its
error, and the others go on; a worker or node that dies has its task retried from the start by
Ray, up to ``max_retries`` times. Progress comes back through a small actor on the driver's node:
a ``start`` event (which node, which attempt) and one ``epoch`` event per finished epoch; each
change of a run is reported as a ``"grid"`` event (:mod:`ensemble.progress`).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..modeling.config import BASE_ALIASES
from ..registry.candidate import MANIFEST
from ..errors import EnsembleError
from ..progress import NULL, Progress
from ..registry.manifest import SEAL, seal_of
from .worker import Files, read_files, run_task, write_files
from ..registry.store import Registry
from ..registry.runs import write_run
from ..tasks import TASKS
from ..training.config import TrainConfig

RAY_INSTALL = 'pip install -e ".[ray]"'


@dataclass
class RayOptions:
    address: str | None = None           # HOST:PORT of a running cluster; None: RAY_ADDRESS, else start one here
    connect_timeout: float = 10.0        # seconds to wait for the cluster at ``address`` to answer
    gpus_per_run: float | None = None    # None: 1 where the cluster has a GPU, else 0
    cpus_per_run: float = 1.0
    max_retries: int = 2                 # retries of a run whose worker or node died
    device: str | None = "auto"          # auto: cuda where a run gets a GPU, else cpu
    num_cpus: int | None = None          # a Ray started here: its CPUs (None: all of the machine's)
    runtime_env: dict[str, Any] | None = None
    poll_seconds: float = 0.2


LOOPBACK = "127.0.0.1"


def require_ray(local: bool = False):
    """Ray, or an error saying what to install. ``local``: a Ray instance is to start on this machine,
    on the loopback address: on Linux, Ray takes the machine's outward address unless
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which it reads once, when it is first imported."""
    if local:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise EnsembleError(f"--engine ray: the ray package is not installed; install it with `{RAY_INSTALL}` "
                            "(from the source tree; `pip install \"ray>=2.40\"` elsewhere), or use --engine local"
                            ) from None
    return ray


def reachable(address: str, timeout: float) -> None:
    """Refuse ``--address`` (or ``RAY_ADDRESS``) when nothing answers at HOST:PORT within ``timeout``
    seconds: a dead cluster is an error naming the address and the timeout, never a wait without end
    ("auto" and other forms without a port are left to Ray)."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        why = "no answer" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise EnsembleError(f"--address {address}: no Ray cluster reachable there ({why}; connect timeout "
                            f"{timeout:g} s); start one with `ray start --head` there, or leave --address out to "
                            "start one here") from None


@contextmanager
def ray_session(opts: RayOptions):
    """Ray for the grid: the one this process already joined, the cluster at ``address`` (or
    ``RAY_ADDRESS``), else a local instance on the loopback address, shut down afterwards."""
    address = opts.address or os.environ.get("RAY_ADDRESS")
    if address:
        reachable(address, opts.connect_timeout)
    ray = require_ray(local=not address)
    if ray.is_initialized():
        yield ray
        return
    if address:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    else:
        ray.init(num_cpus=opts.num_cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 _node_ip_address=LOOPBACK)
    try:
        yield ray
    finally:
        ray.shutdown()


class Reporter:
    """The workers' events, held until the driver drains them (an actor on the driver's node)."""

    def __init__(self):
        self.events: list[dict[str, Any]] = []
        self.verdicts: dict[tuple[str, int], str] = {}   # a search's word on each (run, epoch): go | prune

    def report(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def decide(self, key: str, epoch: int, verdict: str) -> None:
        self.verdicts[(key, epoch)] = verdict

    def verdict(self, key: str, epoch: int) -> str | None:
        return self.verdicts.get((key, epoch))

    def drain(self) -> list[dict[str, Any]]:
        out, self.events = self.events, []
        return out


def course_files(data_dir: Path, configs: list[TrainConfig]) -> Files:
    """The train, dev and test files of every task the configurations train, as bytes."""
    tasks = sorted({t for c in configs for t in c.tasks})
    names = [TASKS[t].file_name(s) for t in tasks for s in ("train", "dev", "test")]
    return {n: (Path(data_dir) / n).read_bytes() for n in names if (Path(data_dir) / n).is_file()}


def base_files(base: str) -> Files | None:
    """A local ``--base`` folder's files (workers may not see it); None for ``minilm`` (installed
    with the package) and hub names (each worker loads them from its hub cache)."""
    p = Path(base).expanduser()
    return read_files(p) if base not in BASE_ALIASES and p.is_dir() else None


def _resources(ray, opts: RayOptions) -> tuple[float, float, str]:
    """(CPUs, GPUs) per run and the device a run trains on; an error where no node fits a run."""
    have = ray.cluster_resources()
    gpus = opts.gpus_per_run if opts.gpus_per_run is not None else (1.0 if have.get("GPU", 0) >= 1 else 0.0)
    for what, need, option in (("CPU", opts.cpus_per_run, "--cpus-per-run"), ("GPU", gpus, "--gpus-per-run")):
        if need > have.get(what, 0):
            raise EnsembleError(f"{option} {need:g}: the Ray cluster has {have.get(what, 0):g} {what}s in all; "
                                f"expected at most that per run")
    device = opts.device if opts.device not in (None, "auto") else ("cuda" if gpus > 0 else "cpu")
    return opts.cpus_per_run, gpus, device


def _reporter(ray):
    """The progress actor, pinned to the driver's node (it must outlive any worker node)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    return ray.remote(num_cpus=0)(Reporter).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False)).remote()


def _drain(ray, reporter) -> list[dict[str, Any]]:
    """The events held by the progress actor; none this time while it cannot be reached (a node
    dying can break its connections for a moment: the events wait for the next poll)."""
    try:
        return ray.get(reporter.drain.remote())
    except ray.exceptions.ActorUnavailableError:
        return []


def _row(key: str, cfg: TrainConfig) -> dict[str, Any]:
    return {"name": cfg.run_name, "fingerprint": key, "status": "queued", "node": None, "epoch": 0,
            "epochs": cfg.epochs, "best_dev": {}, "attempts": 0, "error": None, "candidates": [], "times": {}}


def _node_names(ray) -> dict[str, str]:
    return {n["NodeID"]: f"{n['NodeManagerAddress']} {n['NodeID'][:8]}" for n in ray.nodes()}


def _tell(progress: Progress, change: str, row: dict[str, Any], entry: dict[str, Any] | None = None) -> None:
    """A run's change as a ``"grid"`` event (:mod:`ensemble.progress`)."""
    progress.event({"kind": "grid", "change": change, "row": row, "entry": entry})


def _apply(ray, rows: dict[str, dict], events: list[dict], progress: Progress, nodes: dict[str, str]) -> None:
    """Workers' events into the rows, each reported to ``progress``."""
    for ev in events:
        row = rows.get(ev["key"])
        if row is None or row["status"] in ("done", "failed"):
            continue   # late news of an attempt that died
        if ev["type"] == "start":
            node_id = ev["node"]["node_id"]
            if node_id not in nodes:
                nodes.update(_node_names(ray))
            row.update(status="running", node=nodes.get(node_id, node_id[:8]), node_id=node_id, epoch=0,
                       attempts=row["attempts"] + 1)
            row["times"]["started"] = ev["time"]
            _tell(progress, "retry" if row["attempts"] > 1 else "start", row)
        elif ev["type"] == "epoch":
            row["epoch"] = ev["epoch"]
            for t, v in (ev.get("dev") or {}).items():
                row["best_dev"][t] = max(v, row["best_dev"].get(t, float("-inf")))
            _tell(progress, "epoch", row, ev)


def first_line(e: BaseException) -> str:
    """A failed run's error in one line: the worker's exception, not Ray's wrapping of it."""
    cause = getattr(e, "cause", None) or e
    text = (str(cause).splitlines() or [""])[0]
    return text if isinstance(cause, EnsembleError) else f"{type(cause).__name__}: {text}"


def train_grid(reg: Registry, plan: list[tuple[str, TrainConfig]], data_dir: Path, opts: RayOptions,
               progress: Progress = NULL) -> dict[str, Any]:
    """Train ``plan`` ((fingerprint, configuration) pairs, all to train) as Ray tasks and register
    what they ship back; returns the runs' rows and which are done, retried and failed. Each change
    of a run is a ``"grid"`` event to ``progress``."""
    t0 = time.perf_counter()
    with ray_session(opts) as ray:
        cpus, gpus, device = _resources(ray, opts)
        configs = [c for _, c in plan]
        data_ref = ray.put(course_files(data_dir, configs))
        bases = {c.base: base_files(c.base) for c in configs}
        base_refs = {b: ray.put(f) if f is not None else None for b, f in bases.items()}
        reporter = _reporter(ray)
        ray.get(reporter.drain.remote())   # alive before any run starts: its events are live from the first
        task = ray.remote(run_task).options(num_cpus=cpus, num_gpus=gpus, max_retries=opts.max_retries,
                                            retry_exceptions=False, runtime_env=opts.runtime_env)
        rows = {key: _row(key, cfg) for key, cfg in plan}
        ready_at = time.perf_counter()   # Ray up, the data in its store, the progress actor alive
        pending = {}
        for key, cfg in plan:
            rows[key]["times"]["submitted"] = time.time()
            pending[task.remote(key, cfg.to_dict(), data_ref, base_refs[cfg.base], device, max(1, int(cpus)),
                                reporter)] = key
            _tell(progress, "queued", rows[key])
        try:
            _follow(ray, reg, pending, rows, reporter, opts, progress)
        finally:
            for ref in pending:   # interrupted (Ctrl-C): nothing of ours runs on after us
                ray.cancel(ref, force=True)
            ray.kill(reporter)
    end = time.perf_counter()
    return _summary(rows, end - t0, ready_at - t0, end - ready_at, cpus, gpus, device)


def _follow(ray, reg: Registry, pending: dict, rows: dict[str, dict], reporter, opts: RayOptions,
            progress: Progress) -> None:
    """Until every task has ended: the workers' events as they come, each ended task landed."""
    nodes = _node_names(ray)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=opts.poll_seconds)
        _apply(ray, rows, _drain(ray, reporter), progress, nodes)
        for ref in ready:
            _finish(ray, reg, ref, rows[pending.pop(ref)], opts, progress)


def _finish(ray, reg: Registry, ref, row: dict[str, Any], opts: RayOptions, progress: Progress) -> None:
    """A task's end: its candidates registered (done), or its error recorded (failed)."""
    try:
        shipped = ray.get(ref)
        row["times"].update(shipped["times"], received=time.time())
        row["candidates"] = land(reg, shipped, row["name"])
        row["times"]["landed"] = time.time()
        row.update(status="done", node=row["node"], epoch=len(shipped["result"]["epochs"]))
        row["best_dev"] = {t: max(e["dev"][t] for e in shipped["result"]["epochs"])
                           for t in shipped["result"]["epochs"][0]["dev"]}
    except ray.exceptions.RayTaskError as e:   # the run's own code raised: not retried
        row.update(status="failed", error=first_line(e))
    except ray.exceptions.RayError as e:   # its worker or node died more than --max-retries times
        row.update(status="failed", error=f"{type(e).__name__}: its worker or node died "
                                          f"{opts.max_retries + 1} times (--max-retries {opts.max_retries})")
    except EnsembleError as e:   # what it shipped did not check out: nothing of it registered
        row.update(status="failed", error=str(e).splitlines()[0])
    _tell(progress, row["status"], row)


def _checked(c: dict[str, Any], name: str) -> tuple[str, dict[str, Any], Files]:
    """A shipped candidate's id, manifest and files, every file matching its manifest's sha256 and size."""
    files = dict(c["files"])
    cid = c["id"]
    manifest = json.loads(files.pop(MANIFEST))
    listed = manifest.get("files") or {}
    where = f"run {name}: shipped candidate {cid}"
    if manifest.get(SEAL) != seal_of(manifest):
        raise EnsembleError(f"{where}: its manifest's seal does not match its content (changed in transit); "
                            "nothing of the run registered")
    if manifest.get("id") != cid or set(files) != set(listed):
        raise EnsembleError(f"{where}: its files or id differ from its manifest's; nothing of the run registered")
    for rel, info in sorted(listed.items()):
        data = files[rel]
        if len(data) != info.get("size") or hashlib.sha256(data).hexdigest() != info.get("sha256"):
            raise EnsembleError(f"{where}: {rel}: sha256 differs from its manifest's (damaged in transit); "
                                "nothing of the run registered")
    return cid, manifest, files


def land(reg: Registry, shipped: dict[str, Any], name: str) -> list[str]:
    """Register a run's shipped candidates: all checked first, each added atomically unmarked, the
    run's record written, then each marked as its worker marked it (a run finished)."""
    cands = [_checked(c, name) for c in shipped["candidates"]]
    for cid, manifest, files in cands:
        fields = {k: v for k, v in manifest.items() if k not in ("files", "format", SEAL)}
        fields["training"] = {**fields["training"], "run_complete": False}
        reg.add(lambda stage, files=files, fields=fields: write_files(stage, files) and fields, cid=cid)
    if shipped.get("record"):
        write_run(reg.root, json.loads(shipped["record"]))
    for cid, manifest, _ in cands:
        done = manifest["training"]["run_complete"]
        got = reg.update_manifest(cid, lambda m, done=done: m["training"].update(run_complete=done))
        if got.manifest != manifest:   # never expected: the run's candidates go again, none left half-checked
            keys = sorted(k for k in {*got.manifest, *manifest} if got.manifest.get(k) != manifest.get(k))
            for other, _, _ in cands:
                reg.remove(other)
            raise EnsembleError(f"run {name}: candidate {cid} registered with a manifest other than the one shipped "
                                f"(fields {', '.join(keys)}); the run's candidates removed again")
    return [cid for cid, _, _ in cands]


def _summary(rows: dict[str, dict], seconds: float, startup: float, runs_seconds: float, cpus: float, gpus: float,
             device: str) -> dict[str, Any]:
    runs = list(rows.values())
    return {"engine": "ray", "runs": runs, "done": [r["name"] for r in runs if r["status"] == "done"],
            "retried": [r["name"] for r in runs if r["attempts"] > 1],
            "failed": [{"name": r["name"], "error": r["error"]} for r in runs if r["status"] == "failed"],
            "seconds": seconds, "startup_seconds": startup, "runs_seconds": runs_seconds,
            "per_run": {"cpus": cpus, "gpus": gpus, "device": device}}
