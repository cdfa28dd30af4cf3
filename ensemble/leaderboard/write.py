"""Leaderboard files: writing them byte for byte, all six or none, and scoring the dev files.

The six files (``{task}-{split}-output.csv`` for sst/para/sts and dev/test) are exactly what the
course's code writes (and, when ``predict`` writes them, a stamp :data:`~ensemble.leaderboard.validate.STAMP_NAME`
saying what made them)::

    id \\t Predicted_Sentiment \\n          header (TASKS[task].output_header + "\\n")
    <id> , <prediction> \\n                 one row per input id

with the sst class as an int (``3``), the paraphrase label as the course writes it (``0.0`` /
``1.0``) and the sts score as the raw float (``str(float)``, not clipped). The check of a folder
of them is :mod:`ensemble.leaderboard.validate`; the scores are read back through it.

Pure Python + numpy; no torch, typer or rich.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

if TYPE_CHECKING:   # numpy (and the metrics) load when files are written or scored, not with the command line
    import numpy as np

from ..errors import EnsembleError, shown
from ..files import fault_point, file_sha256, fsync_dir, make_folder, remove_quiet, stage_bytes
from ..tasks import TASKS, get_task, is_plain_id
from .validate import (STAMP_FORMAT, STAMP_NAME, STATE_COMPLETE, STATE_WRITING, CheckedFile, check_folder, check_split,
                       file_dev_score, read_stamp, report)

__all__ = ["dir_lock", "leaderboard_bytes", "write_leaderboard", "leftovers", "score_checked", "score_dir"]

_NAMES = "|".join(re.escape(n) for n in [*(TASKS[t].output_name(s) for t in TASKS for s in ("dev", "test")), STAMP_NAME])
LOCK_FILE = ".ensemble-lock"   # only where a folder cannot be locked itself
# stage_bytes' temp files (mkstemp: 8 random characters) and _backup's hard links
LEFTOVER = re.compile(rf"\.(?:{_NAMES})\.(?:[a-z0-9_]{{8}}\.tmp|\d+\.[0-9a-f]{{8}}\.bak)")


def _check_ids(task: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for i in ids:
        if not is_plain_id(i):
            raise EnsembleError(f"{task}: id {shown(i)} is empty or holds a comma, quote or whitespace; expected a plain id")
        if i in seen:
            raise EnsembleError(f"{task}: id {shown(i)} appears twice; expected each id once")
        seen.add(i)


def leaderboard_bytes(task: str, ids: Sequence[str], values_unrounded: np.ndarray) -> bytes:
    """The leaderboard file for ``task``: header, then ``f"{id} , {value} \\n"`` per id, in order.

    ``values_unrounded`` has shape ``(n, TASKS[task].n_outputs)``: sst class probabilities
    (argmax, first maximum on ties), para probability (rounded half to even: 0.5 -> ``0.0``),
    sts raw score (written as ``str(float)``, not clipped).
    """
    t = get_task(task)
    import numpy as np

    from ..metrics import round_predictions

    vals = np.asarray(values_unrounded, dtype=np.float64)
    if vals.ndim == 1 and t.n_outputs == 1:
        vals = vals.reshape(-1, 1)
    if vals.ndim != 2 or vals.shape[1] != t.n_outputs:
        raise EnsembleError(f"{task}: predictions have shape {vals.shape}; expected (n, {t.n_outputs})")
    ids = [str(i) for i in ids]
    if len(ids) != vals.shape[0]:
        raise EnsembleError(f"{task}: {len(ids)} ids for {vals.shape[0]} prediction rows; expected one id per row")
    _check_ids(task, ids)
    if not np.isfinite(vals).all():
        r = int(np.argwhere(~np.isfinite(vals))[0][0])
        raise EnsembleError(f"{task}: prediction for id {ids[r]!r} is {vals[r].tolist()}; expected finite numbers")
    if t.kind == "binary" and ((vals < 0) | (vals > 1)).any():
        r = int(np.argwhere((vals < 0) | (vals > 1))[0][0])
        raise EnsembleError(f"{task}: probability for id {ids[r]!r} is {float(vals[r, 0])!r}; expected a value in [0, 1]")
    rounded = round_predictions(task, vals)
    if t.kind == "classes":
        texts = [str(int(v)) for v in rounded.tolist()]
    else:
        # + 0.0 turns a -0.0 (round of -0.0) into 0.0; str(float) is how the course's code writes.
        texts = [str(float(v) + 0.0) for v in rounded.tolist()]
    parts = [t.output_header, "\n"]
    parts.extend(f"{i} , {v} \n" for i, v in zip(ids, texts))
    return "".join(parts).encode("utf-8")


# --------------------------------------------------------------------------- writing, all or none


def write_leaderboard(
    out_dir: str | Path, outputs: Mapping[tuple[str, str], tuple[Sequence[str], np.ndarray]],
    stamp: Mapping[str, object] | None = None,
) -> list[Path]:
    """Write ``{task}-{split}-output.csv`` for each ``(task, split) -> (ids, unrounded values)``.

    The folder changes as a whole or is detectably incomplete. Every file's bytes are built (and
    checked) first; then, under an ``flock`` of the folder (two writers into one folder take
    turns), this writer's own leftovers are removed, every new file and both stamps are staged as
    fsynced temp files (a full disk fails here, with every previous file untouched), and the
    renames follow: first a stamp :data:`~ensemble.leaderboard.validate.STAMP_NAME` saying ``"state":
    "writing"`` (with each new file's sha256 and each replaced file's), then each file, then the
    final stamp (``"state": "complete"``; removed when ``stamp`` is None, since the files it named
    are gone). A kill anywhere in between leaves either the previous complete folder, the new
    complete folder, or the writing stamp, which ``validate`` and ``submit`` refuse naming each
    file's version. A failed rename puts back what was replaced (from hard-link backups); a file
    that cannot be put back keeps the writing stamp. Returns the written paths in the order given.
    """
    out = Path(out_dir)
    payloads: list[tuple[Path, bytes]] = []
    for (task, split), (ids, values) in outputs.items():
        check_split(split)
        payloads.append((out / get_task(task).output_name(split), leaderboard_bytes(task, ids, values)))
    make_folder(out, "the leaderboard files")
    with dir_lock(out):
        remove_quiet(*leftovers(out))
        files = {target.name: hashlib.sha256(payload).hexdigest() for target, payload in payloads}
        writing, final = _stamp_bytes(out, stamp, files)
        steps = [(out / STAMP_NAME, writing), *payloads, (out / STAMP_NAME, final)]
        staged, backups = _stage(out, steps)
        _swap_in(out, staged, backups)
        remove_quiet(*backups.values())
        fsync_dir(out)
    return [target for target, _ in payloads]


@contextmanager
def dir_lock(out: Path):
    """An exclusive ``flock`` of the folder itself (no lock file among the leaderboard files or
    the zips), held by each writer of the folder while it writes. Where the file system locks only
    files open for writing (NFS), the lock is on a hidden file :data:`LOCK_FILE` in the folder."""
    fd = _locked(out, os.O_RDONLY)
    if fd is None:
        fd = _locked(out / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    if fd is None:
        raise EnsembleError(f"{out}: cannot lock the folder (neither it nor {LOCK_FILE} in it can be locked); "
                            "expected a local folder for the files")
    try:
        yield
    finally:
        os.close(fd)


def _locked(path: Path, flags: int) -> int | None:
    """A descriptor of ``path`` holding an exclusive ``flock``, or None where it cannot be taken."""
    try:
        fd = os.open(path, flags, 0o666)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        os.close(fd)
        return None
    return fd


def leftovers(out: Path) -> list[Path]:
    """The temp files and backups an interrupted write of the folder left (hidden, named after
    one of the six files or the stamp); removed by the next write, under its lock."""
    return [p for p in sorted(out.iterdir()) if LEFTOVER.fullmatch(p.name) and p.is_file()]


def _stamp_bytes(out: Path, stamp: Mapping[str, object] | None,
                 files: dict[str, str]) -> tuple[bytes, bytes | None]:
    """The writing stamp (what is replaced by what) and the final one (None: no stamp)."""
    replacing = {name: file_sha256(out / name) for name in files if (out / name).is_file()}
    old = read_stamp(out).stamp
    def doc(**fields: object) -> bytes:
        return (json.dumps({"format": STAMP_FORMAT, **fields}, indent=2, sort_keys=True) + "\n").encode("utf-8")
    writing = doc(**(stamp or {}), state=STATE_WRITING, files=files,
                  replacing={"ensemble": (old or {}).get("ensemble"), "files": replacing})
    return writing, None if stamp is None else doc(**stamp, state=STATE_COMPLETE, files=files)


def _backup(out: Path, target: Path) -> str | None:
    """A hard link to ``target``'s current file, or None where hard links are not possible."""
    bak = str(out / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.bak")
    try:
        os.link(target, bak)
    except OSError:
        return None  # no hard links here: no rollback for this file
    return bak


def _stage(out: Path, steps: list[tuple[Path, bytes | None]]
           ) -> tuple[list[tuple[Path, Path | None]], dict[Path, str]]:
    """Each step's bytes as a fsynced temp file next to its target (None: the target is to be
    removed), and a backup of each existing target. On failure nothing staged is left and every
    previous file is untouched."""
    staged: list[tuple[Path, Path | None]] = []
    backups: dict[Path, str] = {}
    try:
        for target, payload in steps:
            staged.append((target, None if payload is None else stage_bytes(out, target.name, payload)))
        for target, _ in staged:
            bak = _backup(out, target) if target.exists() and target not in backups else None
            if bak is not None:
                backups[target] = bak
    except BaseException as exc:
        remove_quiet(*(tmp for _, tmp in staged if tmp), *backups.values())
        if isinstance(exc, OSError):
            raise EnsembleError(
                f"{out}: cannot write the leaderboard files ({exc.strerror or exc}); the previous files are untouched"
            ) from exc
        raise
    return staged, backups


def _roll_back(replaced: list[Path], backups: dict[Path, str]) -> list[str]:
    """Put back the files already replaced, newest first (a used backup leaves ``backups``); the
    ones that could not be put back, each with where its previous version is kept. The stamp
    (replaced first) is put back only when every file was: otherwise its writing state stays."""
    not_restored: list[str] = []
    for target in reversed(list(dict.fromkeys(replaced))):
        if target.name == STAMP_NAME and not_restored:
            continue
        bak = backups.pop(target, None)
        try:
            if bak is not None:
                os.replace(bak, target)
            else:
                os.unlink(target)  # it did not exist before
        except FileNotFoundError:
            pass
        except OSError:
            not_restored.append(f"{target}" + (f" (previous version kept at {bak})" if bak else ""))
    return not_restored


def _swap_in(out: Path, staged: list[tuple[Path, Path | None]], backups: dict[Path, str]) -> None:
    """Rename each staged file over its target (or remove the target), in order; on failure roll
    back and explain. ``leaderboard.swap`` is the fault point before each step."""
    replaced: list[Path] = []
    try:
        for target, tmp in staged:
            fault_point("leaderboard.swap")
            if tmp is None:
                remove_quiet(target)
            else:
                os.replace(tmp, target)
            replaced.append(target)
    except BaseException as exc:
        not_restored = _roll_back(replaced, backups)
        remove_quiet(*(tmp for _, tmp in staged if tmp), *backups.values())
        if not isinstance(exc, Exception):
            raise
        if not_restored:
            raise EnsembleError(
                f"{out}: writing the leaderboard files failed ({exc}); already replaced and not restored: "
                + "; ".join(not_restored) + "; the others are untouched, and the folder's stamp says it is "
                "incomplete (`validate` and `submit` refuse it): run `ensemble predict` again"
            ) from exc
        raise EnsembleError(
            f"{out}: writing the leaderboard files failed ({exc}); the previous files are untouched"
        ) from exc


# --------------------------------------------------------------------------- scoring


def score_dir(pred_dir: str | Path, data_dir: str | Path, tasks: Iterable[str] | None = None) -> dict[str, float]:
    """The dev metric of each task from the (rounded) dev leaderboard files, joined by id.

    sst/para accuracy, sts Pearson r, over the labelled dev ids. Raises EnsembleError listing
    the problems if a dev file is missing or malformed.
    """
    problems, found = check_folder(pred_dir, data_dir, tasks, ("dev",))
    if problems:
        raise EnsembleError(f"{pred_dir}: cannot score the dev files:\n" + report(problems, found))
    return score_checked(found)


def score_checked(found: Mapping[tuple[str, str], CheckedFile]) -> dict[str, float]:
    """The dev metric of each task of the dev files among ``found`` (checked, without problems)."""
    return {task: file_dev_score(checked) for (task, s), checked in found.items() if s == "dev"}
