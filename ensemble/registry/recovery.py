"""The registry's locks and its recovery on open: what a killed writer leaves behind is put back or
removed, and nothing a live writer is using is ever touched.

- ``<registry>/.lock``: an exclusive ``flock`` taken by every change of a live candidate folder or
  of ``ensembles/`` (swap, remove, manifest edit, saving an ensemble).
- ``.staging/<name>/`` is owned by the process holding an ``flock`` on ``.staging/<name>.lock``
  for the stage's whole life (:func:`owned_stage`); recovery removes a stage whose lock it can
  take, at once (the kernel drops a dead process's locks: no pid to be reused, no age to wait).
- ``.trash/<name>.restore``: written before a swap moves the live folder aside; see
  :func:`recover`.
- ``.<file>.<random>.tmp``: the temporary file of :func:`ensemble.files.atomic_write_bytes`; one
  left in a live candidate folder or in ``ensembles/`` by a kill before its rename is removed
  (under the lock, which every writer there holds).

Storage only: no torch.
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .candidate import MANIFEST
from ..files import disk_full, remove_quiet

# what tempfile.mkstemp(prefix=".<name>.", suffix=".tmp") makes: 8 random characters
LEFTOVER_TMP = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")
STAGE_LOCK = ".lock"
LEGACY_STAGE_AGE = 86400   # a stage without an owner's lock file (made by an older version)


@contextmanager
def folder_lock(root: Path):
    """An exclusive ``flock`` on ``<root>/.lock``, taken while live candidates or ensembles change."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def owned_stage(staging: Path) -> Iterator[Path]:
    """A fresh folder in ``staging``, owned by this process while the block runs: its lock file is
    taken before the folder exists and released (and removed) after the block. On an exception the
    stage is removed; on success the caller has renamed it away."""
    name = uuid.uuid4().hex
    lock_path = staging / f"{name}{STAGE_LOCK}"
    with open(lock_path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        stage = staging / name
        try:
            stage.mkdir()
            yield stage
        except OSError as e:
            shutil.rmtree(stage, ignore_errors=True)
            full = disk_full(e, staging.parent, "nothing was added to or changed in the registry (the partial copy "
                             "is removed)")
            if full is None:
                raise
            raise full from e
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        finally:
            remove_quiet(lock_path)


def _owner_gone(lock_path: Path) -> int | None:
    """An open descriptor holding the stage's lock when its owner is gone (the caller cleans up,
    then closes it); None while the owner lives (or the lock file vanished: a clean finish)."""
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def clean_staging(staging: Path) -> list[str]:
    """Remove the stages whose owner is gone (and their lock files); a stage without a lock file
    (an older version's) only after a day. Returns the names removed."""
    removed = []
    for entry in sorted(staging.iterdir()) if staging.is_dir() else []:
        if entry.name.endswith(STAGE_LOCK):
            stage = staging / entry.name[: -len(STAGE_LOCK)]
            fd = _owner_gone(entry)
            if fd is None:
                continue
            try:
                shutil.rmtree(stage, ignore_errors=True)
                remove_quiet(entry)
            finally:
                os.close(fd)
            removed.append(stage.name)
        elif entry.is_dir() and not (staging / f"{entry.name}{STAGE_LOCK}").exists() \
                and time.time() - entry.stat().st_mtime > LEGACY_STAGE_AGE:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def leftover_tmps(root: Path) -> list[Path]:
    """The temporary files a killed atomic write left in the live candidate folders (their top and
    first-level folders, where stored files are written) and in ``ensembles/``."""
    folders = [root / "ensembles"]
    cands = root / "candidates"
    for d in sorted(cands.iterdir()) if cands.is_dir() else []:
        if d.is_dir() and not d.is_symlink():
            folders += [d, *(s for s in d.iterdir() if s.is_dir() and not s.is_symlink())]
    return [p for f in folders if f.is_dir() for p in f.iterdir()
            if LEFTOVER_TMP.fullmatch(p.name) and p.is_file() and not p.is_symlink()]


def recover(root: Path) -> None:
    """Undo swaps that a crash interrupted, and clear the project's own leftovers.

    ``Registry._swap`` writes a marker ``.trash/<name>.restore`` before moving the live folder to
    ``.trash/<name>``: a marker whose candidate has no live folder means the swap died between
    its two renames, so the old folder is put back. Marker-less trash (a finished swap or
    removal whose delete was cut short) is deleted, as are the temporary files of interrupted
    atomic writes (:func:`leftover_tmps`) and the stages of dead writers (:func:`clean_staging`).
    All under the lock: a writer inside a swap or a manifest edit holds it.
    """
    if not (root / "candidates").is_dir():
        return
    trash = root / ".trash"
    busy = any(trash.iterdir()) if trash.is_dir() else False
    tmps = leftover_tmps(root)
    if busy or tmps:
        with folder_lock(root):
            if busy:
                _restore_swaps(trash, root / "candidates")
            remove_quiet(*leftover_tmps(root))   # read again under the lock: a writer may have finished
    clean_staging(root / ".staging")


def _restore_swaps(trash: Path, candidates_dir: Path) -> None:
    """Put back the folders of interrupted swaps, then empty the trash (caller holds the lock)."""
    for m in trash.glob("*.restore"):
        folder = trash / m.name[: -len(".restore")]
        live = candidates_dir / folder.name.split(".", 1)[0]
        if folder.is_dir() and not live.exists() and (folder / MANIFEST).exists():
            os.rename(folder, live)
        m.unlink()
    for t in trash.iterdir():
        if t.is_symlink() or t.is_file():
            remove_quiet(t)
        elif t.is_dir():
            shutil.rmtree(t, ignore_errors=True)
