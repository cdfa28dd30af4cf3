"""``ensemble.log_candidate``: any training loop's unrounded outputs into the registry, in one call.

``outputs`` maps task -> split -> ``(ids, values)``: ``sst`` an ``(n, 5)`` array of logits (or class
probabilities), ``para`` ``n`` logits (or paraphrase probabilities), ``sts`` ``n`` scores; splits
``dev`` and ``test``. Each is checked against the course file of its task and split (every id once,
no other, every value finite and of the right width; each problem named by task, split, row and
what was expected), converted the documented way (``kind="logits"``: ``scipy.special.softmax`` over
the 5 sst logits, ``scipy.special.expit`` of the paraphrase logit, both in float64; sts scores are
kept as they are), and registered as ONE candidate through the import path of ``register
--predictions`` (atomic; bound to the data files' sha256; the same content twice refused).

Plain Python, numpy and scipy: importable, and usable, without torch or transformers.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from scipy.special import expit, softmax

from ..data import Split, read_split
from ..errors import EnsembleError, shown
from ..predfile import STS_BOUND, SUM_TOLERANCE, id_listing
from ..tasks import TASKS
from .candidate import Candidate
from .home import data_for
from .register import Loaded, add_imported, dropped_lines, reader_rows, write_prediction_files
from .store import Registry

KINDS = ("logits", "probabilities")
LOG_SPLITS = ("dev", "test")
REGISTRY_ENV, DATA_ENV = "ENSEMBLE_REGISTRY", "ENSEMBLE_DATA"


def log_candidate(name: str, outputs: Mapping[str, Mapping[str, Any]], *, registry: str | Path | None = None,
                  data: str | Path | None = None, kind: str = "logits", add: bool = False, again: bool = False,
                  parameters: int | None = None) -> str:
    """Check, convert and register ``outputs`` as one candidate named ``name``; returns its id.

    ``registry`` defaults to ``$ENSEMBLE_REGISTRY`` or ``checkpoints``; ``data`` to ``$ENSEMBLE_DATA``
    or the folder the registry records (as the command line's). ``kind``: ``"logits"`` or
    ``"probabilities"`` (sst and para; sts is always the score). A name already in the registry is
    refused unless ``add=True``, which adds splits or tasks it does not hold yet to that candidate.
    The same prediction content as a stored candidate is refused unless ``again=True``."""
    if kind not in KINDS:
        raise EnsembleError(f"kind={kind!r}: expected one of {', '.join(map(repr, KINDS))}")
    if not isinstance(name, str) or not name.strip():
        raise EnsembleError(f"name {shown(name)}: expected a non-empty name for the candidate")
    reg = Registry(registry if registry is not None else os.environ.get(REGISTRY_ENV) or "checkpoints")
    given = data if data is not None else os.environ.get(DATA_ENV) or None
    folder = data_for(reg, None if given is None else Path(given)).folder
    splits, loaded, dropped = checked_outputs(outputs, folder, kind)
    same_name = [c for c in reg.candidates() if c.name == name] if reg.exists else []
    if same_name and not add:
        c = same_name[0]
        raise EnsembleError(f"a candidate named {name!r} is already in {reg.root} ({c.id}: {_held(c)}); nothing "
                            "added: pass add=True to add splits or tasks it lacks, or log under another name")
    if same_name:
        cand = _add_to(reg, same_name[0], loaded, splits, dropped)
    else:
        cand = add_imported(reg, loaded, splits, name, "predictions", f"log_candidate({name!r})", {"logged": kind},
                            parameters, again, dropped)
    for line in dropped_lines(dropped):   # said, as the command line says it: no row is lost unseen
        print(f"ensemble: {line}", file=sys.stderr)
    return cand.id


def checked_outputs(outputs: Mapping[str, Mapping[str, Any]], folder: Path, kind: str
                    ) -> tuple[dict[tuple[str, str], Split], Loaded, dict[str, list[str]]]:
    """The course splits, the converted values by (task, split) and the rows the reader drops."""
    if not isinstance(outputs, Mapping) or not outputs:
        raise EnsembleError(f"outputs {shown(outputs)}: expected a mapping task -> split -> (ids, values)")
    splits, loaded, dropped = {}, {}, {}
    for task, by_split in outputs.items():
        if task not in TASKS:
            raise EnsembleError(f"outputs: task {shown(task)}; expected one of {', '.join(TASKS)}")
        if not isinstance(by_split, Mapping) or not by_split:
            raise EnsembleError(f"outputs[{task!r}] is {shown(by_split)}; expected a mapping split -> (ids, values)")
        for split_name, pair in by_split.items():
            if split_name not in LOG_SPLITS:
                raise EnsembleError(f"outputs[{task!r}]: split {shown(split_name)}; expected dev or test")
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise EnsembleError(f"outputs[{task!r}][{split_name!r}]: expected a pair (ids, values)")
            split = read_split(folder, task, split_name)
            ids, values = _checked(task, split, *pair, kind)
            splits[(task, split_name)] = split
            loaded[(task, split_name)] = reader_rows(split.path, ids, values, split, dropped)
    return splits, loaded, dropped


def _as_array(where: str, values: Any) -> np.ndarray:
    if hasattr(values, "detach"):   # a torch tensor, without importing torch
        values = values.detach().cpu().double().numpy()
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise EnsembleError(f"{where}: values are not an array of numbers ({e})") from None


def _checked(task: str, split: Split, ids: Any, values: Any, kind: str) -> tuple[list[str], np.ndarray]:
    """``(ids, values)`` of one task and split after every check, values converted (shape (n, k))."""
    t, where = TASKS[task], f"{task} {split.split}"
    arr = _as_array(where, values)
    width = len(t.prediction_columns)
    if width == 1 and arr.ndim == 2 and arr.shape[1:] == (1,):
        arr = arr[:, 0]
    want = "(n, 5): 5 logits per row" if width == 5 else "(n,) or (n, 1): one value per row"
    if (width == 5 and (arr.ndim != 2 or arr.shape[1] != 5)) or (width == 1 and arr.ndim != 1):
        raise EnsembleError(f"{where}: values have shape {arr.shape}; expected {want}")
    ids = [str(i).strip().lower() for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
    if len(ids) != len(arr):
        raise EnsembleError(f"{where}: {len(ids)} ids for {len(arr)} rows of values; expected one id per row")
    _check_ids(where, ids, split)
    _check_values(where, task, ids, arr, kind)
    if t.kind == "classes" and kind == "logits":
        arr = softmax(arr, axis=1)
    elif t.kind == "binary" and kind == "logits":
        arr = expit(arr)
    return ids, arr.reshape(len(ids), width)


def _check_ids(where: str, ids: list[str], split: Split) -> None:
    known = set(split.ids) | {sid for _, sid in split.skipped}
    seen: dict[str, int] = {}
    for r, i in enumerate(ids):
        if i not in known:
            raise EnsembleError(f"{where}, row {r}: id {shown(i)} is not in {split.path}; expected one of the "
                                f"{len(split.ids)} ids of that file")
        if i in seen:
            raise EnsembleError(f"{where}, row {r}: id {shown(i)} repeats row {seen[i]}; expected each id once")
        seen[i] = r
    missing = [i for i in split.ids if i not in seen]
    if missing:
        raise EnsembleError(f"{where}: {len(missing)} id{'s' if len(missing) != 1 else ''} of {split.path} without "
                            f"a row: {id_listing(missing)}; expected one row for each of its {len(split.ids)} ids")


def _check_values(where: str, task: str, ids: list[str], arr: np.ndarray, kind: str) -> None:
    t = TASKS[task]
    what = "score" if t.kind == "regression" else kind[:-1] if kind == "logits" else "probability"
    rows = arr if arr.ndim == 2 else arr[:, None]
    bad = ~np.isfinite(rows)
    if t.kind == "regression":
        bad |= np.abs(np.nan_to_num(rows)) > STS_BOUND
    elif kind == "probabilities":
        bad |= (rows < 0.0) | (rows > 1.0)
    if bad.any():
        r, c = (int(x) for x in np.argwhere(bad)[0])
        col = f" column {c}" if rows.shape[1] > 1 else ""
        bound = f" within +-{STS_BOUND:g}" if t.kind == "regression" else " in [0, 1]" if kind == "probabilities" else ""
        raise EnsembleError(f"{where}, row {r} (id {ids[r]}){col}: value {float(rows[r, c])!r}; expected a finite "
                            f"{what}{bound}")
    if t.kind == "classes" and kind == "probabilities" and len(rows):
        off = np.abs(rows.sum(axis=1) - 1.0) > SUM_TOLERANCE
        if off.any():
            r = int(np.argmax(off))
            raise EnsembleError(f"{where}, row {r} (id {ids[r]}): probabilities sum to {float(rows[r].sum())!r}; "
                                f"expected 1 within {SUM_TOLERANCE:g} (pass kind='logits' for raw scores)")


def _held(c: Candidate) -> str:
    return ", ".join(f"{r.task} {r.split}" for r in c.prediction_records()) or "nothing"


def _add_to(reg: Registry, cand: Candidate, loaded: Loaded, splits: dict, dropped: dict[str, list[str]]) -> Candidate:
    """Add splits or tasks ``cand`` lacks (add=True); one it holds already is refused, nothing changed."""
    have = {(r.task, r.split) for r in cand.prediction_records()}
    clash = sorted(set(loaded) & have)
    if cand.kind != "predictions" or clash:
        why = (f"it already holds {', '.join(f'{t} {s}' for t, s in clash)}" if clash else
               f"it is a {cand.kind} candidate, not logged predictions")
        raise EnsembleError(f"candidate {cand.id} ({cand.name}): {why}; nothing added (log them under another name)")
    lacking = sorted({t for t, _ in loaded if (t, "dev") not in loaded and (t, "dev") not in have})
    if lacking:
        raise EnsembleError(f"log_candidate({cand.name!r}): task {lacking[0]} has test values but no dev values; "
                            "dev is needed to select")

    def build(stage: Path, manifest: dict[str, Any]) -> dict[str, Any]:
        preds, metrics = write_prediction_files(stage, loaded, splits)
        for section, new in (("predictions", preds), ("metrics", metrics)):
            for t, entries in new.items():
                manifest.setdefault(section, {}).setdefault(t, {}).update(entries)
        manifest["tasks"] = [t for t in TASKS if t in manifest["predictions"]]
        if dropped:
            manifest.setdefault("source", {}).setdefault("dropped_rows", {}).update(dropped)
        return manifest

    return reg.update(cand.id, build)
