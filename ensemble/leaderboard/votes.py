"""Past submissions as candidates: the course's six leaderboard files (``<task>-<split>-output.csv``,
in a folder, its ``predictions/`` subfolder, or a submission zip) registered as one candidate of
hard labels (kind ``labels``: it votes).

What the files hold is what goes in: sst the class as a one-hot row (probability 1 on the written
class), para the written 0/1 label, sts the written score (the course writes it unrounded). Lost
against probabilities: how sure the model was. Averaged in an ensemble, a labels member adds one
full vote to its class where a probability member adds its confidence; sts loses nothing. Each
file is checked as ``ensemble validate`` checks it (header, rows, ids, values); Quora rows the
course reader skips for an empty label are dropped and counted.
"""
from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..data import read_split
from ..errors import EnsembleError
from ..files import read_input, read_zip_member
from ..registry.candidate import Candidate
from ..registry.register import add_imported, reader_rows
from ..registry.store import Registry
from ..predfile import header_for
from ..tasks import TASKS
from .validate import OUTPUT_SPLITS, check_output, format_problems

LABELS = "labels"
ARCHITECTURE = "leaderboard labels (vote)"
OUTPUT_NAMES = {TASKS[t].output_name(s): (t, s) for t in TASKS for s in OUTPUT_SPLITS}
LOST = ("registered as hard labels (leaderboard files): sst and para vote with one-hot / 0-1 labels, the "
        "model's confidence is lost (sts keeps its scores); `ensemble.log_candidate` or "
        "`ensemble.log_course_model` registers the unrounded outputs instead")


def leaderboard_files(path: Path) -> dict[tuple[str, str], tuple[str, bytes]]:
    """``(task, split) -> (label, bytes)`` of the leaderboard files in ``path`` (a folder, its
    ``predictions/`` subfolder, or a zip); empty when it holds none."""
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        return _zip_members(path)
    found: dict[tuple[str, str], tuple[str, bytes]] = {}
    for folder in (path, path / "predictions") if path.is_dir() else ():
        for name, key in OUTPUT_NAMES.items():
            p = folder / name
            if p.is_file() and key not in found:
                found[key] = (str(p), read_input(p))
    return found


MEMBER_LIMIT = 256 << 20   # a leaderboard file in a zip is read only up to this size (256 MiB)


def _zip_members(path: Path) -> dict[tuple[str, str], tuple[str, bytes]]:
    found: dict[tuple[str, str], tuple[str, bytes]] = {}
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                key = OUTPUT_NAMES.get(PurePosixPath(info.filename).name)
                if key is None or info.is_dir():
                    continue
                if key in found:
                    raise EnsembleError(f"{path}: holds {PurePosixPath(info.filename).name} twice ({found[key][0]} and "
                                        f"{path}:{info.filename}); expected one set of leaderboard files")
                found[key] = (f"{path}:{info.filename}", read_zip_member(z, info.filename, path, MEMBER_LIMIT))
    except zipfile.BadZipFile as e:
        raise EnsembleError(f"{path}: not a readable zip ({e}); expected a course submission zip") from None
    return found


def register_labels(registry: Registry, path: Path, name: str, data_dir: Path, parameters: int | None = None,
                    force: bool = False) -> Candidate:
    """Register the leaderboard files in ``path`` as one labels candidate (see the module's note)."""
    found = leaderboard_files(path)
    if not found:
        raise EnsembleError(f"{path}: no leaderboard files; expected {', '.join(OUTPUT_NAMES)} (in the folder, "
                            "its predictions/ subfolder or a submission zip)")
    splits, loaded, dropped = {}, {}, {}
    for (t, s), (label, payload) in sorted(found.items()):
        split = read_split(data_dir, t, s)
        problems, values = check_output(label, payload, t, split)
        if problems:
            first = payload.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
            hint = (f"\n  its header {first!r} is that of unrounded predictions: named {t}-{s}.csv it registers as "
                    "such (richer than labels)" if first == header_for(t) else "")
            raise EnsembleError(f"{label}: not a valid leaderboard file of {split.path}; nothing registered:\n"
                                + format_problems(problems, per_file=5) + hint)
        ids = list(values)
        v = np.fromiter(values.values(), dtype=np.float64, count=len(ids))
        arr = np.eye(5)[v.astype(np.int64)] if TASKS[t].kind == "classes" else v.reshape(-1, 1)
        splits[(t, s)] = split
        loaded[(t, s)] = reader_rows(label, ids, arr, split, dropped)
    return add_imported(registry, loaded, splits, name, LABELS, f"--predictions {path}",
                        {"registered_from": str(Path(path).resolve()), "format": "leaderboard files"},
                        parameters, force, dropped, architecture=ARCHITECTURE)


# -- marked as such wherever they appear ---------------------------------------------------------
def vote_notes(tasks: list[str], usable: list[Candidate]) -> list[str]:
    """One note per task whose library holds hard-label candidates (leaderboard files): they vote."""
    out = []
    for task in tasks:
        votes = [c for c in usable if c.kind == LABELS and c.has_predictions(task, "dev")]
        if votes:
            out.append(f"{task}: {', '.join(f'{c.id} ({c.name})' for c in votes)}: hard labels from "
                       "leaderboard files (vote): " + ("the score as written" if task == "sts" else
                                                        "each adds a full vote to its label, no confidence"))
    return out


def mark_votes(sel: dict[str, Any], by_id: dict[str, Candidate]) -> dict[str, Any]:
    """The selection's steps with ``vote: true`` on each hard-label candidate (shown as such)."""
    for step in sel.get("trajectory", []):
        c = by_id.get(step.get("candidate"))
        if c is not None and c.kind == LABELS:
            step["vote"] = True
    return sel
