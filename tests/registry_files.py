"""Helpers shared by the registry and register tests: prediction import folders, tree snapshots."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from ensemble.data import read_split
from ensemble.predfile import prediction_file_name, write_predictions
from ensemble.tasks import TASKS

ALL_TASKS = ("sst", "para", "sts")


def tree(root: Path):
    """Every path under the registry's candidates folder with its bytes."""
    return sorted((p.relative_to(root).as_posix(), p.read_bytes() if p.is_file() else None)
                  for p in (root / "candidates").rglob("*"))


def staging_empty(root: Path) -> bool:
    return not list((root / ".staging").iterdir())


def fake_values(task, n, rng):
    if TASKS[task].kind == "classes":
        x = rng.random((n, 5)) + 0.01
        return x / x.sum(axis=1, keepdims=True)
    if TASKS[task].kind == "binary":
        return rng.random((n, 1))
    return rng.random((n, 1)) * 5


def make_pred_dir(data: Path, dst: Path, tasks=ALL_TASKS, splits=("dev", "test"), seed=0, shuffle=True):
    """Valid import files <task>-<split>.csv for the data's ids (rows shuffled: joined by id)."""
    rng = np.random.default_rng(seed)
    dst.mkdir(parents=True, exist_ok=True)
    for t in tasks:
        for s in splits:
            ids = read_split(data, t, s).ids
            order = rng.permutation(len(ids)) if shuffle else np.arange(len(ids))
            write_predictions(dst / prediction_file_name(t, s), t, [ids[i] for i in order], fake_values(t, len(ids), rng))
    return dst


def crafted_copy(src: Path, folder: Path, cid, stale: bool = False) -> Path:
    """A copy of candidate folder ``src`` at ``folder`` whose manifest says ``"id": cid`` (its
    files untouched, so only the id is wrong); ``stale`` also marks a cached prediction stale."""
    shutil.copytree(src, folder)
    manifest = json.loads((folder / "candidate.json").read_text())
    manifest["id"] = cid
    if stale:
        entry = next(iter(next(iter(manifest["predictions"].values())).values()))
        entry["data_sha256"] = "0" * 64
    (folder / "candidate.json").write_text(json.dumps(manifest))
    return folder


def victim_beside(root: Path) -> Path:
    """``<registry>/../victim`` holding a file: what an id of ``../../victim`` points at."""
    victim = root.parent / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    return victim


def flip_last_byte(path: Path) -> tuple[str, str]:
    """Flip one bit of the file's last byte (same size; for weights, a value, not the header);
    returns the sha256 before and after."""
    raw = bytearray(path.read_bytes())
    before = hashlib.sha256(raw).hexdigest()
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))
    return before, hashlib.sha256(raw).hexdigest()


def tamper_refusal(path: Path, recorded: str, actual: str) -> str:
    """The error of a stored file whose content no longer matches its manifest's record."""
    return (f"{path}: sha256 {actual} differs from the {recorded} recorded in the candidate's manifest: the file "
            "changed after it was stored; refused (run `ensemble verify`)")
