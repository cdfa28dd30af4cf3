"""The conductor of selection and prediction, without the terminal: ``select`` over a registry (each
task's selection, the system saved and the saved-ensemble document) and ``predict`` from a saved
ensemble (the six leaderboard files from cached predictions, or a model run on ``--input``).
Returns plain data; the CLI renders it. (``ensemble run`` from data to a submission: :mod:`ensemble.runner`.)

No torch at import time: only ``predict --input`` loads it, lazily.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import data as data_mod
from . import selection
from .errors import EnsembleError
from .metrics import score
from .files import atomic_write_bytes, file_sha256, make_folder
from .predfile import align_predictions
from .progress import NULL, Progress
from .registry.candidate import Candidate, check_model, damaged_note, now_iso
from .registry.store import Registry
from .selection import ensemble_predictions, score_on
from .leaderboard.votes import mark_votes, vote_notes
from .leaderboard.write import dir_lock, leaderboard_bytes, score_dir, write_leaderboard
from .registry.saved import check_ensemble_name, ensemble_doc, members_in_order, prediction_hashes
from .selection import SYSTEMS, choose_systems
from .tasks import TASK_NAMES, TASKS

# -- selection ----------------------------------------------------------------------------------
@dataclass
class SelectionReport:
    name: str
    mode: str
    tasks: dict[str, Any]                      # task -> TaskSelection.to_dict()
    summary: list[dict[str, Any]]              # rows: system, params, per-task dev, mean, heldout
    notes: list[str] = field(default_factory=list)
    stale: dict[str, list[str]] = field(default_factory=dict)
    path: str | None = None
    sample: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mode": self.mode, "tasks": self.tasks, "summary": self.summary,
                "notes": self.notes, "stale": self.stale, "path": self.path, "sample": self.sample}


def stale_candidates(cands: list[Candidate], data_dir: Path) -> dict[str, list[str]]:
    hashes: dict[str, str] = {}
    out = {}
    for c in cands:
        s = c.stale(data_dir, hashes)
        if s:
            out[c.id] = s
    return out


def usable_candidates(cands: list[Candidate], data_dir: Path, notes: list[str]) -> tuple[list[Candidate], dict[str, list[str]]]:
    """The candidates whose cached predictions match the data files, and the stale ones (noted)."""
    stale = stale_candidates(cands, data_dir)
    by_id = {c.id: c for c in cands}
    for cid, what in stale.items():
        fix = (f"they were made from other versions of these files than those in {data_dir}: pass the --data "
               "they were made from, or, if the course files were updated on purpose, `ensemble register "
               "--refresh` recomputes them (it asks first)"
               if by_id[cid].kind == "model" else "re-export them from the code that made them and register them again")
        notes.append(f"candidate {cid} has stale cached predictions ({'; '.join(what)}): left out; {fix}")
    return [c for c in cands if c.id not in stale], stale


def dev_predictions(task: str, usable: list[Candidate], notes: list[str]) -> tuple[dict, dict[str, int]]:
    """Each usable candidate's dev predictions for ``task`` and its parameter count; a candidate
    whose cached file cannot be read is left out with a note naming the file and line."""
    cand_preds = {}
    params = {}
    for c in usable:
        if not c.has_predictions(task, "dev"):
            if task in c.tasks or c.kind == "predictions":
                notes.append(f"{task}: candidate {c.id} has no dev predictions for it; skipped")
            continue
        try:
            cand_preds[c.id] = c.predictions(task, "dev")
        except EnsembleError as e:
            notes.append(f"{task}: candidate {c.id} left out: its cached dev predictions are damaged ({e}); "
                         "`ensemble verify` checks every stored file")
            continue
        params[c.id] = c.parameters or 0
    return cand_preds, params


def select(registry: Registry, data_dir: Path, tasks=TASK_NAMES, mode: str = selection.DEFAULT_MODE,
           max_size: int | None = None, steps: int = 50, repeats: int = 2, seed: int = 0, name: str | None = None,
           save: bool = True, sample: bool = False, system: str | None = None, **settings: Any) -> SelectionReport:
    """Select each task's ensemble over the registry's candidates and save it as ``name``.

    ``settings``: the interval's and the modes' (folds, level, bags, fraction; see
    :func:`ensemble.selection.select`). ``system``: "ensemble" saves each task's ensemble; "auto"
    saves the best single candidate instead where the ensemble is not expected to beat it on new
    rows (:func:`ensemble.selection.verdict`; mode ``auto``: where its choice is the best single
    candidate), with the reason recorded. None: "auto" for mode ``auto``, else "ensemble"."""
    system = system or ("auto" if mode == selection.AUTO else "ensemble")
    if system not in SYSTEMS:
        raise EnsembleError(f"system {system!r}: expected one of {', '.join(SYSTEMS)}")
    name = check_ensemble_name(f"ensemble-{mode}" if name is None else name)   # before the work, not after
    cands, damaged = registry.scan()
    if not cands:
        raise EnsembleError(f"the registry {registry.root} holds no candidates yet: train some with "
                            "`ensemble train` or register them with `ensemble register`")
    notes = [damaged_note(p) for p in damaged]
    usable, stale = usable_candidates(cands, data_dir, notes)
    by_id = {c.id: c for c in usable}
    selections: dict[str, Any] = {}
    left_out = []
    for task in tasks:
        split = data_mod.read_split(data_dir, task, "dev")
        cand_preds, params = dev_predictions(task, usable, notes)
        if not cand_preds:
            left_out.append(task)
            continue
        inp = selection.TaskInput(task=task, dev_ids=split.ids, dev_labels=split.labels, candidates=cand_preds,
                                 params=params)
        sel = selection.select(inp, mode=mode, max_size=max_size, steps=steps, repeats=repeats, seed=seed, **settings)
        selections[task] = sel
    if not selections:
        raise EnsembleError("\n  ".join(["no task has candidates with dev predictions; nothing to select", *notes]))
    notes += [f"{t}: no candidate has dev predictions; task left out of the ensemble" for t in left_out]
    notes += vote_notes(list(selections), usable)
    test_scores = labelled_test_scores(selections, by_id, data_dir, notes)
    summary = summarise(selections, usable, test_scores)
    choices = choose_systems(selections, system)
    report = SelectionReport(name, mode, {t: mark_votes({**s.to_dict(), "test": test_scores.get(t), **choices[t]}, by_id)
                                          for t, s in selections.items()}, summary, notes, stale, sample=sample)
    if save:
        doc = ensemble_doc(name, mode, sample, data_dir, selections, choices, by_id, summary)
        report.path = str(registry.save_ensemble(name, doc))
    return report


def _aligned(cand: Candidate, task: str, split: str, ids: list[str]) -> np.ndarray | None:
    if not cand.has_predictions(task, split):
        return None
    try:
        return align_predictions(cand.path, *cand.predictions(task, split), ids)
    except EnsembleError:   # damaged or other ids: no test score (the note names the candidate)
        return None


def labelled_test_scores(selections: dict[str, Any], by_id: dict[str, Candidate], data_dir: Path,
                         notes: list[str]) -> dict[str, dict[str, float]]:
    """Where a task's test file carries labels (never used for selection), score the ensemble and the
    best single candidate on it. The course's test-student files have no labels: nothing to show."""
    out: dict[str, dict[str, float]] = {}
    for task, sel in selections.items():
        path = Path(data_dir) / TASKS[task].file_name("test")
        if not path.exists():
            continue
        split = data_mod.read_file(path, task, labelled=None, split="test")   # labels where the header has them
        if not split.labelled:
            continue
        preds = {cid: _aligned(by_id[cid], task, "test", split.ids) for cid in set(sel.weights) | {sel.best_single[0]}}
        lacking = sorted(cid for cid, p in preds.items() if p is None)
        if lacking:
            notes.append(f"{task}: labelled test file present, but {', '.join(lacking)} lack matching test predictions; "
                         "no test score")
            continue
        out[task] = {"ensemble": score_on(task, preds, split.labels, sel.weights),
                     "best_single": score_on(task, preds, split.labels, {sel.best_single[0]: 1})}
    return out


def summarise(selections: dict[str, Any], cands: list[Candidate],
              test_scores: dict[str, dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """The report's results table: best single model, best single per task, the ensemble."""
    tasks = list(selections)
    params = {c.id: c.parameters or 0 for c in cands}
    names = {c.id: c.name for c in cands}
    rows = []
    full = [c for c in cands if all(c.dev_metric(t) is not None for t in tasks)]
    if full:
        best = max(full, key=lambda c: (np.mean([c.dev_metric(t) for t in tasks]), c.id))
        dev = {t: best.dev_metric(t) for t in tasks}
        rows.append({"system": f"best single model ({names[best.id]})", "parameters": params[best.id],
                     "dev": dev, "mean_dev": float(np.mean(list(dev.values()))), "heldout": None})
    per_task = {t: selections[t].best_single for t in tasks}
    dev = {t: float(per_task[t][1]) for t in tasks}
    ids = {per_task[t][0] for t in tasks}
    rows.append({"system": "best single model per task", "parameters": sum(params.get(i, 0) for i in ids),
                 "dev": dev, "mean_dev": float(np.mean(list(dev.values()))), "heldout": None})
    chosen = {t: _chosen(selections[t]) for t in tasks}
    members = {m for t in tasks for m in chosen[t][1]}
    dev = {t: chosen[t][2] for t in tasks}
    held = {t: (None if selections[t].heldout_gain_mean is None
                else float(selections[t].best_single[1] + selections[t].heldout_gain_mean)) for t in tasks}
    mode = selections[tasks[0]].mode
    what = (f"{mode}: " + ", ".join(f"{t} {chosen[t][0]}" for t in tasks) if mode == selection.AUTO else
            f"{mode} ensemble (" + ", ".join(f"{t} {len(chosen[t][1])}" for t in tasks) + " members)")
    rows.append({"system": what, "parameters": sum(params.get(i, 0) for i in members), "dev": dev,
                 "mean_dev": float(np.mean(list(dev.values()))), "heldout": held,
                 "mean_heldout": None if None in held.values() else float(np.mean(list(held.values())))})
    if test_scores:
        rows[-1]["test"] = {t: v["ensemble"] for t, v in test_scores.items()}
        rows[-2]["test"] = {t: v["best_single"] for t, v in test_scores.items()}
    rows.extend(soup_rows(cands, tasks))
    return rows


def _chosen(sel) -> tuple[str, list[str], float]:
    """(the system in words, its members, its dev score): the ensemble, or auto's choice."""
    if sel.chosen == "single":
        return "single", [sel.best_single[0]], float(sel.best_single[1])
    what = f"{sel.chosen} {len(sel.weights)}" if sel.chosen is not None else str(len(sel.weights))
    return what, list(sel.weights), float(sel.ensemble_dev_score)


def soup_rows(cands: list[Candidate], tasks: list[str]) -> list[dict[str, Any]]:
    """The summary's soup row (``ensemble soup``): per task, the soup of that task with the best dev
    score among the selected candidates; held-out: its best single's dev plus its held-out gain."""
    best: dict[str, Candidate] = {}
    for c in cands:
        rec = c.soup or {}
        for t in rec.get("tasks", []) if len(rec.get("tasks", [])) == 1 else []:
            if t in tasks and c.dev_metric(t) is not None and (t not in best or c.dev_metric(t) > best[t].dev_metric(t)):
                best[t] = c
    if not best:
        return []
    dev = {t: float(c.dev_metric(t)) for t, c in best.items()}
    held = {}
    for t, c in best.items():
        h = c.soup.get("heldout") or {}
        single = c.soup.get("best_single_dev")
        held[t] = None if h.get("estimate") is None or single is None else float(single + h["estimate"])
    whole = len(best) == len(tasks) and None not in held.values()
    return [{"system": "soups (" + ", ".join(f"{t} {len(c.soup.get('members', []))} members"
                                         for t, c in best.items()) + ")",
             "parameters": sum({c.id: c.parameters or 0 for c in best.values()}.values()),
             "dev": dev, "mean_dev": float(np.mean(list(dev.values()))) if len(dev) == len(tasks) else None,
             "heldout": held, "mean_heldout": float(np.mean(list(held.values()))) if whole else None}]


# -- prediction ---------------------------------------------------------------------------------
def _present(registry: Registry, doc: dict[str, Any], tasks) -> dict[str, Candidate]:
    """The registry's candidates by id, after checking that every member of ``doc`` for ``tasks``
    is still there: a removed member is named with its tasks, and the way out (select again)."""
    cands, damaged = registry.scan()                    # one read of the manifests, not one per member
    by_id = {c.id: c for c in cands}
    lost: dict[str, list[str]] = {}
    for task in (t for t in TASKS if t in tasks):
        for cid in members_in_order(doc, task):
            if cid not in by_id:
                lost.setdefault(cid, []).append(task)
    broken = [p for p in damaged if p.candidate in lost]
    if broken:
        raise EnsembleError(f"ensemble {doc['name']}: member folder {broken[0].candidate} is damaged "
                            f"({broken[0].message}); run `ensemble verify`")
    if lost:
        what = ", ".join(f"{cid} ({', '.join(ts)})" for cid, ts in lost.items())
        raise EnsembleError(f"ensemble {doc['name']} lost member{'s' if len(lost) > 1 else ''} {what}: removed from "
                            f"{registry.root}; run `ensemble select` again to choose from the candidates left")
    return by_id


def _weighted(task: str, members: dict[str, int], loaded: dict[str, tuple[list[str], np.ndarray]],
              ids: list[str], where: str) -> np.ndarray:
    """Members' predictions joined by id onto ``ids``, averaged by the selector's one weighted average."""
    aligned = {cid: align_predictions(f"{where} (member {cid}'s cached {task} predictions)", *loaded[cid], ids)
               for cid in members}
    return ensemble_predictions(aligned, members)


def _inputs(doc: dict[str, Any], data_dir: Path, splits) -> list[tuple[str, str, Path]]:
    """``(task, split, course file)`` of every leaderboard file the ensemble writes, after checking
    that each course file is there and each task has members: an error before anything is written."""
    # the document's fields were checked where it was read (ensemble_file)
    missing = [f"{task} {split}: {Path(data_dir) / TASKS[task].file_name(split)}"
               for task in doc["tasks"] for split in splits
               if not (Path(data_dir) / TASKS[task].file_name(split)).is_file()]
    if missing:
        raise EnsembleError(f"course file{'s' if len(missing) > 1 else ''} not found: " + "; ".join(missing)
                            + f"; nothing written (expected the course's files in {data_dir}: --data)")
    for task in doc["tasks"]:
        if not members_in_order(doc, task):
            raise EnsembleError(f"ensemble {doc['name']}, task {task}: no members; nothing written "
                                "(run `ensemble select` again)")
    return [(task, split, Path(data_dir) / TASKS[task].file_name(split)) for task in doc["tasks"] for split in splits]


def _member_predictions(doc: dict[str, Any], by_id: dict[str, Candidate], task: str, sp: data_mod.Split,
                        data_dir: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """Each member's cached predictions of ``task`` on split ``sp``, checked against what select
    recorded (their sha256) and against the course file (its sha256)."""
    entry, split, loaded = doc["tasks"][task], sp.split, {}
    for cid in members_in_order(doc, task):
        c = by_id[cid]
        if not c.has_predictions(task, split):
            raise EnsembleError(f"ensemble {doc['name']}: member {cid} has no cached {task} {split} predictions")
        want = entry.get("prediction_sha256", {}).get(cid, {}).get(split)
        if want and want != c.prediction_sha256(task, split):
            raise EnsembleError(f"ensemble {doc['name']}: member {cid}'s {task} {split} predictions changed "
                                "since selection; run `ensemble select` again")
        if c.prediction_record(task, split).data_sha256 != sp.sha256:
            raise EnsembleError(f"member {cid}'s cached {task} {split} predictions were made from another "
                                f"version of {sp.path.name} than the one in {data_dir}; restore that file, or, if the "
                                "course files were updated on purpose, `ensemble register --refresh` recomputes the "
                                "members (it asks first), then `ensemble select` again")
        loaded[cid] = c.predictions(task, split)
    return loaded


def predict(registry: Registry, data_dir: Path, out: Path, ensemble: str | None = None,
            splits=("dev", "test")) -> dict[str, Any]:
    """Write the leaderboard files of a selected ensemble from cached predictions; score dev.

    Every course file must be there (an error before anything is written); an ensemble without
    some task writes the others' files, and the result's notes say which files it did not write."""
    doc = registry.load_ensemble(ensemble)
    inputs = _inputs(doc, data_dir, splits)
    by_id = _present(registry, doc, doc["tasks"])
    outputs = {}
    for task, split, path in inputs:
        sp = data_mod.read_split(data_dir, task, split)
        loaded = _member_predictions(doc, by_id, task, sp, data_dir)
        outputs[(task, split)] = (sp.ids, _weighted(task, members_in_order(doc, task), loaded, sp.ids, str(path)))
    absent = [TASKS[t].output_name(s) for t in TASKS if t not in doc["tasks"] for s in splits]
    notes = [f"ensemble {doc['name']} has no members for {', '.join(t for t in TASKS if t not in doc['tasks'])}: "
             f"{', '.join(absent)} not written, so `submit` will refuse {out} until they are there (select with "
             "candidates for every task)"] if absent else []
    written = write_leaderboard(out, outputs, _stamp(doc, by_id, data_dir, list(outputs)))
    scores = score_dir(out, data_dir, tasks=[t for t, s in outputs if s == "dev"]) if "dev" in splits else {}
    return {"ensemble": doc["name"], "written": [str(p) for p in written], "dev_scores": scores, "notes": notes,
            "not_written": absent, "sample": bool(doc.get("sample"))}


def _stamp(doc: dict[str, Any], by_id: dict[str, Candidate], data_dir: Path,
           written: list[tuple[str, str]]) -> dict[str, Any]:
    """What made the leaderboard files, for the folder's stamp: the ensemble, each task's weights
    and members' prediction hashes, and the sha256 of each data file a written file answers."""
    members = {t: members_in_order(doc, t) for t in sorted({t for t, _ in written})}
    return {
        "ensemble": doc["name"], "ensemble_created": doc.get("created"), "created": now_iso(),
        "sample": bool(doc.get("sample")),
        "tasks": {t: {"weights": dict(m), "dev_score": doc["tasks"][t].get("dev_score"),
                      "prediction_sha256": prediction_hashes(t, m, by_id),
                      **{k: doc["tasks"][t][k] for k in ("system", "reason") if k in doc["tasks"][t]}}
                  for t, m in members.items()},
        "data": {TASKS[t].file_name(s): file_sha256(Path(data_dir) / TASKS[t].file_name(s)) for t, s in written},
    }


def predict_input(registry: Registry, input_file: Path, task: str, out: Path, ensemble: str | None = None,
                  device=None, precision: str = "fp32", progress: Progress = NULL, compile: bool = False) -> dict[str, Any]:
    """Run the ensemble's members on a new file in the course format and write its leaderboard file."""
    from .modeling.infer import TokenCache, check_precision, pick_device, predict_split  # lazy: torch, only for --input
    from .modeling.model import load_model  # lazy: torch, only for --input

    if task not in TASKS:
        raise EnsembleError(f"--task {task}: expected one of {', '.join(TASKS)}")
    doc = registry.load_ensemble(ensemble)
    if task not in doc["tasks"]:
        raise EnsembleError(f"ensemble {doc['name']} has no members for {task}")
    members = members_in_order(doc, task)
    split = data_mod.read_file(input_file, task)
    dev = pick_device(device)
    check_precision(precision, dev)
    by_id = _present(registry, doc, [task])
    cands = {cid: by_id[cid] for cid in members}
    external = [cid for cid, c in cands.items() if c.kind != "model"]
    if external:
        raise EnsembleError(f"members {', '.join(external)} are imported predictions without a model; they cannot "
                            f"predict new inputs. Select an ensemble of model candidates for --input")
    cache = TokenCache()
    loaded = {}
    for cid, c in cands.items():   # one model in memory at a time
        check_model(c)
        model, tokenizer = load_model(c.model_dir, dev)
        progress.start(f"{c.name} on {Path(input_file).name}", len(split))
        loaded[cid] = predict_split(model, tokenizer, split, dev, precision, cache, progress=progress, compile=compile)
        progress.stop()
        del model
    values = _weighted(task, members, loaded, split.ids, str(input_file))
    stem = Path(input_file).stem
    make_folder(Path(out), "the leaderboard file")
    target = Path(out) / f"{task}-{stem}-output.csv"
    with dir_lock(Path(out)):      # one writer of the folder at a time, as for the six files
        atomic_write_bytes(target, leaderboard_bytes(task, split.ids, values))
    result = {"ensemble": doc["name"], "written": [str(target)], "rows": len(split)}
    if split.labelled:
        result["score"] = score(task, values, split.labels)
        result["metric"] = TASKS[task].metric
    return result
