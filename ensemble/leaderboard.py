"""Leaderboard files: writing them byte for byte, all six or none, and scoring the dev files.

The six files (``{task}-{split}-output.csv`` for sst/para/sts and dev/test) are exactly what the
course's code writes (and, when ``predict`` writes them, a stamp :data:`~ensemble.validate.STAMP_NAME`
saying what made them)::

    id \\t Predicted_Sentiment \\n          header (TASKS[task].output_header + "\\n")
    <id> , <prediction> \\n                 one row per input id

with the sst class as an int (``3``), the paraphrase label as the course writes it (``0.0`` /
``1.0``) and the sts score as the raw float (``str(float)``, not clipped). The check of a folder
of them is :mod:`ensemble.validate`; the scores are read back through it.

Pure Python + numpy; no torch, typer or rich.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from .errors import EnsembleError
from .files import atomic_write_text, fsync_dir, make_folder, remove_quiet, stage_bytes
from .metrics import pearson, round_predictions
from .tasks import TASKS, get_task, is_plain_id
from .validate import STAMP_FORMAT, STAMP_NAME, CheckedFile, check_folder, check_split, report

__all__ = ["leaderboard_bytes", "write_leaderboard", "score_checked", "score_dir"]


def _check_ids(task: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for i in ids:
        if not is_plain_id(i):
            raise EnsembleError(f"{task}: id {i!r} is empty or holds a comma, quote or whitespace; expected a plain id")
        if i in seen:
            raise EnsembleError(f"{task}: id {i!r} appears twice; expected each id once")
        seen.add(i)


def leaderboard_bytes(task: str, ids: Sequence[str], values_unrounded: np.ndarray) -> bytes:
    """The leaderboard file for ``task``: header, then ``f"{id} , {value} \\n"`` per id, in order.

    ``values_unrounded`` has shape ``(n, TASKS[task].n_outputs)``: sst class probabilities
    (argmax, first maximum on ties), para probability (rounded half to even: 0.5 -> ``0.0``),
    sts raw score (written as ``str(float)``, not clipped).
    """
    t = get_task(task)
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

    All-or-nothing as far as the file system allows: every file's bytes are built (and checked)
    first, then staged as fsynced temp files in ``out_dir``, then each is ``os.replace``'d over
    its target. A failure before the replace loop leaves every previous file untouched; a failure
    inside it puts back the files already replaced (from hard-link backups taken before the loop).
    Returns the written paths in the order given.

    With ``stamp`` (what made the files: ensemble, members' prediction hashes, data hashes),
    :data:`~ensemble.validate.STAMP_NAME` is written atomically after the files, holding it and
    the sha256 of each file written. A folder changed later no longer matches its stamp.
    """
    out = Path(out_dir)
    payloads: list[tuple[Path, bytes]] = []
    for (task, split), (ids, values) in outputs.items():
        check_split(split)
        payloads.append((out / get_task(task).output_name(split), leaderboard_bytes(task, ids, values)))
    make_folder(out, "the leaderboard files")
    staged, backups = _stage(out, payloads)
    _swap_in(out, staged, backups)
    remove_quiet(*backups.values())
    fsync_dir(out)
    if stamp is not None:
        files = {target.name: hashlib.sha256(payload).hexdigest() for target, payload in payloads}
        atomic_write_text(out / STAMP_NAME, json.dumps({"format": STAMP_FORMAT, **stamp, "files": files},
                                                       indent=2, sort_keys=True) + "\n")
    return [target for target, _ in payloads]


def _backup(out: Path, target: Path) -> str | None:
    """A hard link to ``target``'s current file, or None where hard links are not possible."""
    bak = str(out / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.bak")
    try:
        os.link(target, bak)
    except OSError:
        return None  # no hard links here: no rollback for this file
    return bak


def _stage(out: Path, payloads: list[tuple[Path, bytes]]) -> tuple[list[tuple[Path, Path]], dict[Path, str]]:
    """Each payload as a fsynced temp file next to its target, and a backup of each existing target.

    On failure nothing staged is left and every previous file is untouched."""
    staged: list[tuple[Path, Path]] = []
    backups: dict[Path, str] = {}
    try:
        for target, payload in payloads:
            staged.append((target, stage_bytes(out, target.name, payload)))
        for target, _ in staged:
            bak = _backup(out, target) if target.exists() else None
            if bak is not None:
                backups[target] = bak
    except BaseException as exc:
        remove_quiet(*(tmp for _, tmp in staged), *backups.values())
        if isinstance(exc, OSError):
            raise EnsembleError(
                f"{out}: cannot write the leaderboard files ({exc.strerror or exc}); the previous files are untouched"
            ) from exc
        raise
    return staged, backups


def _roll_back(replaced: list[Path], backups: dict[Path, str]) -> list[str]:
    """Put back the files already replaced (a used backup leaves ``backups``); the ones that
    could not be put back, each with where its previous version is kept."""
    not_restored: list[str] = []
    for target in replaced:
        bak = backups.pop(target, None)
        try:
            if bak is not None:
                os.replace(bak, target)
            else:
                os.unlink(target)  # it did not exist before
        except OSError:
            not_restored.append(f"{target}" + (f" (previous version kept at {bak})" if bak else ""))
    return not_restored


def _swap_in(out: Path, staged: list[tuple[Path, Path]], backups: dict[Path, str]) -> None:
    """``os.replace`` each staged file over its target; on failure roll back and explain."""
    replaced: list[Path] = []
    try:
        for target, tmp in staged:
            os.replace(tmp, target)
            replaced.append(target)
    except BaseException as exc:
        not_restored = _roll_back(replaced, backups)
        remove_quiet(*(tmp for _, tmp in staged), *backups.values())
        if not isinstance(exc, Exception):
            raise
        if not_restored:
            raise EnsembleError(
                f"{out}: writing the leaderboard files failed ({exc}); already replaced and not restored: "
                + "; ".join(not_restored) + "; the others are untouched"
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
    scores: dict[str, float] = {}
    for (task, s), checked in found.items():
        if s != "dev":
            continue
        split = checked.split
        preds = np.fromiter((checked.values[i] for i in split.ids), dtype=np.float64, count=len(split))
        labels = split.labels
        if TASKS[task].metric == "pearson":
            scores[task] = pearson(preds, labels)
        else:
            scores[task] = float(np.mean(preds == labels)) if len(labels) else 0.0
    return scores
