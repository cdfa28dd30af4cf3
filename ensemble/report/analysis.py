"""What a selected ensemble does on dev, beside the best single candidate, in numbers.

numpy only (no torch, no matplotlib): ``ensemble analyze`` prints these numbers and ``ensemble
report`` draws them (:mod:`ensemble.report.figures`, :mod:`ensemble.report.page`).

Per task, on the dev rows (unrounded predictions rounded as the leaderboard rounds them,
:func:`ensemble.metrics.round_predictions`):

* ``sst``: the 5x5 confusion matrix (rows: gold class, columns: predicted class), each class's
  accuracy (its diagonal cell over its row) and how far off the errors are (off by 1, 2, 3, 4);
* ``para``: the 2x2 matrix and, per band of the predicted paraphrase probability (tenths; a
  band holds its lower edge, the last one also 1.0), the rows, mean probability, share of
  paraphrases and accuracy (calibration);
* ``sts``: per gold-score band (0-1, ..., 4-5), Pearson r, the mean absolute error and the mean
  signed error (prediction minus gold);
* fixes and breaks: the rows the ensemble gets right that the best single candidate gets wrong,
  and the reverse. For ``sts`` a row is right when the score is within :data:`STS_TOLERANCE` of
  gold;
* the worst errors: ``sst`` wrong rows by class distance, then by the probability left on the
  gold class (lower first); ``para`` wrong rows by the distance of the probability from gold;
  ``sts`` rows by absolute error; ties by id;
* diversity: the members' pairwise Pearson r of one number per row (``sst``: the expected class
  ``sum_k k p_k``; ``para``: the probability; ``sts``: the score) and, for the classification
  tasks, the share of rows whose rounded predictions differ.

The ensemble is the saved one's *selected* ensemble (``select`` may save the best single
candidate instead, per task; the analysis shows what the ensemble would change); its prediction
is :func:`ensemble.selection.ensemble_predictions`, the one weighted average.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import data as data_mod
from .. import selection, workflow
from ..errors import EnsembleError
from ..metrics import pearson, round_predictions, score
from ..predfile import align_predictions
from ..registry.store import Registry
from ..leaderboard.votes import LABELS
from ..registry.saved import members_in_order
from ..selection import ensemble_predictions, score_on
from ..selection.results import jsonable
from ..tasks import TASK_NAMES, TASKS

STS_TOLERANCE = 1.0                               # an sts row is right when |score - gold| <= this
PARA_EDGES = tuple(i / 10 for i in range(11))     # predicted-probability bands
STS_EDGES = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)        # gold-score bands
SHOWN_CHANGES = 5                                 # fixed and broken rows listed (all are counted)


# -- matrices and bands -------------------------------------------------------------------------
def confusion(gold, pred, k: int) -> list[list[int]]:
    """``k x k`` counts: row = gold class, column = predicted class."""
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (np.asarray(gold, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return m.tolist()


def per_class_accuracy(matrix: list[list[int]]) -> list[float | None]:
    """Each gold class's share predicted right (None: the class has no rows)."""
    return [None if sum(row) == 0 else row[i] / sum(row) for i, row in enumerate(matrix)]


def off_by(gold, pred, k: int = 5) -> dict[int, int]:
    """How many rows are off by 1, 2, ... ``k - 1`` classes."""
    d = np.abs(np.asarray(gold, dtype=np.int64) - np.asarray(pred, dtype=np.int64))
    return {i: int((d == i).sum()) for i in range(1, k)}


def band_of(values, edges: Sequence[float]) -> np.ndarray:
    """The band index of each value: band ``i`` holds ``[edges[i], edges[i+1])``, the last band
    also its upper edge; values outside the edges go to the first or last band."""
    return np.clip(np.searchsorted(np.asarray(edges), np.asarray(values), side="right") - 1, 0, len(edges) - 2)


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if len(x) else None


def calibration(prob, gold, edges: Sequence[float] = PARA_EDGES) -> list[dict[str, Any]]:
    """``para`` per predicted-probability band: rows, mean probability, share of paraphrases, accuracy."""
    prob = np.asarray(prob, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.int64)
    band = band_of(prob, edges)
    right = np.round(prob) == gold
    return [{"low": edges[i], "high": edges[i + 1], "rows": int((band == i).sum()),
             "mean_probability": _mean(prob[band == i]), "positive_rate": _mean(gold[band == i].astype(float)),
             "accuracy": _mean(right[band == i].astype(float))} for i in range(len(edges) - 1)]


def gold_bands(score, gold, edges: Sequence[float] = STS_EDGES) -> list[dict[str, Any]]:
    """``sts`` per gold-score band: rows, Pearson r (None under 2 rows), mean absolute and signed error."""
    score = np.asarray(score, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.float64)
    band = band_of(gold, edges)
    out = []
    for i in range(len(edges) - 1):
        s, g = score[band == i], gold[band == i]
        out.append({"low": edges[i], "high": edges[i + 1], "rows": len(s),
                    "pearson": pearson(s, g) if len(s) >= 2 else None,
                    "mean_abs_error": _mean(np.abs(s - g)), "mean_error": _mean(s - g)})
    return out


# -- right, wrong and how wrong -----------------------------------------------------------------
def right(task: str, raw: np.ndarray, gold) -> np.ndarray:
    """Per row, whether the prediction is right (``sts``: within :data:`STS_TOLERANCE`)."""
    if TASKS[task].kind == "regression":
        return np.abs(np.asarray(raw)[:, 0] - np.asarray(gold, dtype=np.float64)) <= STS_TOLERANCE
    return round_predictions(task, raw) == np.asarray(gold)


def severity(task: str, raw: np.ndarray, gold) -> np.ndarray:
    """How wrong each row is (larger: worse; see the module doc)."""
    raw = np.asarray(raw, dtype=np.float64)
    kind = TASKS[task].kind
    if kind == "classes":
        g = np.asarray(gold, dtype=np.int64)
        distance = np.abs(np.argmax(raw, axis=1) - g)
        return distance + (1.0 - raw[np.arange(len(g)), g]) * 0.999   # the gold probability breaks ties
    return np.abs(raw[:, 0] - np.asarray(gold, dtype=np.float64))


def shown(task: str, raw_row: np.ndarray) -> int | float:
    """A prediction as a person reads it: the ``sst`` class, the ``para`` probability, the ``sts`` score."""
    if TASKS[task].kind == "classes":
        return int(np.argmax(raw_row))
    return float(raw_row[0])


def gold_value(task: str, g) -> int | float:
    return float(g) if TASKS[task].kind == "regression" else int(g)


def worst_rows(task: str, ens: np.ndarray, gold, n: int) -> list[int]:
    """Row positions of the ``n`` worst errors of ``ens`` (``sst``/``para``: wrong rows only)."""
    sev = severity(task, ens, gold)
    rows = np.arange(len(sev)) if TASKS[task].kind == "regression" else np.flatnonzero(~right(task, ens, gold))
    order = sorted(rows.tolist(), key=lambda i: -sev[i])   # stable: ties keep dev order
    return order[:max(n, 0)]


def changes(task: str, ens: np.ndarray, single: np.ndarray, gold) -> tuple[list[int], list[int]]:
    """Row positions the ensemble fixes (right, single wrong) and breaks (wrong, single right)."""
    e, s = right(task, ens, gold), right(task, single, gold)
    return np.flatnonzero(e & ~s).tolist(), np.flatnonzero(~e & s).tolist()


# -- diversity ----------------------------------------------------------------------------------
def per_row_number(task: str, raw: np.ndarray) -> np.ndarray:
    """One number per row for correlations: the expected class, the probability, the score."""
    raw = np.asarray(raw, dtype=np.float64)
    if TASKS[task].kind == "classes":
        return raw @ np.arange(raw.shape[1], dtype=np.float64)
    return raw[:, 0]


def diversity(task: str, preds: dict[str, np.ndarray]) -> dict[str, Any]:
    """The members' pairwise correlation and (classification) disagreement matrices, members in order."""
    ids = list(preds)
    numbers = [per_row_number(task, preds[c]) for c in ids]
    corr = [[1.0 if i == j else pearson(numbers[i], numbers[j]) for j in range(len(ids))] for i in range(len(ids))]
    disagree = None
    if TASKS[task].kind != "regression":
        labels = [round_predictions(task, preds[c]) for c in ids]
        disagree = [[float(np.mean(labels[i] != labels[j])) for j in range(len(ids))] for i in range(len(ids))]
    return {"members": ids, "correlation": corr, "disagreement": disagree}


# -- one task ------------------------------------------------------------------------------------
def _row(task: str, ex, g, values: dict[str, np.ndarray], i: int) -> dict[str, Any]:
    return {"id": ex.id, "text_a": ex.text_a, "text_b": ex.text_b, "gold": gold_value(task, g),
            **{k: shown(task, v[i]) for k, v in values.items()}}


def quality(task: str, raw: np.ndarray, gold) -> dict[str, Any]:
    """The task's error breakdown of one system's predictions."""
    kind = TASKS[task].kind
    if kind == "regression":
        return {"bands": gold_bands(raw[:, 0], gold)}
    k = TASKS[task].n_outputs if kind == "classes" else 2
    pred = round_predictions(task, raw).astype(np.int64)
    m = confusion(gold, pred, k)
    out: dict[str, Any] = {"confusion": m, "per_class_accuracy": per_class_accuracy(m)}
    if kind == "classes":
        out["off_by"] = off_by(gold, pred, k)
    else:
        out["bands"] = calibration(raw[:, 0], gold)
    return out


def task_numbers(task: str, examples: list, gold, ens: np.ndarray, single: np.ndarray,
                 members: dict[str, np.ndarray], worst: int) -> dict[str, Any]:
    """Everything ``analyze`` shows of one task, from dev rows aligned to ``examples``."""
    fixed, broken = changes(task, ens, single, gold)
    pair = {"ensemble": ens, "best_single": single}
    return {
        "ensemble": quality(task, ens, gold), "best_single": quality(task, single, gold),
        "fixes": len(fixed), "breaks": len(broken),
        "fixed": [_row(task, examples[i], gold[i], pair, i) for i in fixed[:SHOWN_CHANGES]],
        "broken": [_row(task, examples[i], gold[i], pair, i) for i in broken[:SHOWN_CHANGES]],
        "worst": [{**_row(task, examples[i], gold[i], {"ensemble": ens}, i),
                   "members": {c: shown(task, p[i]) for c, p in members.items()}}
                  for i in worst_rows(task, ens, gold, worst)],
        "diversity": diversity(task, members),
    }


# -- a saved ensemble over the registry ----------------------------------------------------------
def selected_weights(doc: dict[str, Any], task: str) -> dict[str, float]:
    """The task's selected ensemble (``select`` may have saved the best single candidate instead),
    members in selection order; documents without a ``selected`` record: the saved members."""
    entry = doc["tasks"][task]
    chosen = entry.get("selected")
    if not chosen:
        return members_in_order(doc, task)
    return members_in_order({"name": doc.get("name"), "tasks": {task: chosen}}, task)


def _reselect(task: str, doc: dict[str, Any], split, preds: dict, params: dict, notes: list[str]):
    """The selection over today's candidates with the saved mode and settings (no cross-fit): its
    best single candidate and trajectory; a note where it no longer picks the saved members."""
    entry = doc["tasks"][task]
    inp = selection.TaskInput(task, split.ids, split.labels, preds, params)
    sel = selection.select(inp, mode=doc.get("mode") or selection.DEFAULT_MODE, repeats=0,
                           **(entry.get("settings") or {}))
    if dict(sel.weights) != dict(selected_weights(doc, task)):
        notes.append(f"{task}: the registry changed since {doc['name']} was selected: today's selection picks other "
                     "members (the selection curve shows today's; the analysis shows the saved members)")
    return sel


def _curve(task: str, sel, aligned: dict[str, np.ndarray], gold, entry: dict[str, Any]) -> dict[str, Any]:
    """The selection curve: the ensemble's dev score after each step (bagged, which records no
    step scores: after each member, with the final weights), the best single score and the
    saved held-out estimate with its interval (as scores: best single + gain)."""
    steps = [{"step": s.step, "candidate": s.candidate, "score": s.ensemble_score, "accepted": s.accepted}
             for s in sel.trajectory]
    if any(s["score"] is None for s in steps):
        members = list(sel.weights)
        for i, s in enumerate(steps):
            s["score"] = score_on(task, aligned, gold, {m: sel.weights[m] for m in members[:i + 1]})
    single = float(sel.best_single[1])
    held = entry.get("interval") or {}
    heldout = None if held.get("estimate") is None else {
        "estimate": single + held["estimate"], "low": single + held["low"], "high": single + held["high"],
        "level": held.get("level"), "members": len(sel.weights)}
    return {"steps": steps, "mode": sel.mode, "metric": sel.metric, "best_single": single,
            "in_sample": float(sel.ensemble_dev_score), "heldout": heldout}


def analyze_task(task: str, doc: dict[str, Any], usable: list, data_dir: Path, worst: int,
                 notes: list[str]) -> dict[str, Any]:
    split = data_mod.read_split(data_dir, task, "dev")
    preds, params = workflow.dev_predictions(task, usable, notes)
    weights = selected_weights(doc, task)
    lost = [c for c in weights if c not in preds]
    if lost:
        raise EnsembleError("\n  ".join([f"ensemble {doc['name']}, task {task}: member(s) {', '.join(lost)} have no "
                                          "usable dev predictions in the registry (removed, stale or damaged); run "
                                          "`ensemble select` again", *notes]))
    sel = _reselect(task, doc, split, preds, params, notes)
    keep = np.isfinite(split.labels.astype(np.float64))
    examples = [e for e, k in zip(split.examples, keep) if k]
    ids = [e.id for e in examples]
    aligned = {c: align_predictions(f"candidate {c}'s {task} dev predictions", *preds[c], ids) for c in preds}
    gold = split.labels[keep]
    best = sel.best_single[0]
    ens = ensemble_predictions({c: aligned[c] for c in weights}, weights)
    names = {c.id: c.name + (" (vote: hard labels)" if c.kind == LABELS else "") for c in usable}
    return {"metric": TASKS[task].metric, "rows": len(ids), "system": doc["tasks"][task].get("system", "ensemble"),
            "members": dict(weights), "names": {c: names[c] for c in {*weights, best}},
            "best_single_id": best, "ensemble_score": score(task, ens, gold), "best_single_score": score(task, aligned[best], gold),
            **task_numbers(task, examples, gold, ens, aligned[best], {c: aligned[c] for c in weights}, worst),
            "curve": _curve(task, sel, aligned, gold, doc["tasks"][task])}


def analyze(registry: Registry, data_dir: Path, ensemble: str | None = None, tasks: Sequence[str] | None = None,
            worst: int = 5, sample: bool = False) -> dict[str, Any]:
    """The saved ensemble ``ensemble`` (default: the newest) on dev, task by task, beside the best
    single candidate (JSON-safe: what ``analyze --json`` prints and ``report`` draws)."""
    if worst < 0:
        raise EnsembleError(f"--worst {worst}: expected 0 or more rows")
    doc = registry.load_ensemble(ensemble)
    have = [t for t in TASK_NAMES if t in doc.get("tasks", {})]
    missing = [t for t in (tasks or []) if t not in have]
    if missing:
        raise EnsembleError(f"ensemble {doc['name']} has no members for {', '.join(missing)} (it has "
                            f"{', '.join(have) or 'no task'})")
    notes: list[str] = []
    usable, _ = workflow.usable_candidates(registry.candidates(), data_dir, notes)
    out = {t: analyze_task(t, doc, usable, data_dir, worst, notes) for t in have if not tasks or t in tasks}
    return jsonable({"ensemble": doc["name"], "mode": doc.get("mode"), "created": doc.get("created"),
                     "sample": bool(sample or doc.get("sample")), "data": str(data_dir), "notes": notes,
                     "summary": doc.get("summary") or [], "tasks": out})
