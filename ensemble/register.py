"""Putting candidates into the registry: trained models, model folders, imported predictions.

Every model candidate carries unrounded dev and test predictions computed by the one batched
inference path (:mod:`ensemble.infer`), each bound to the sha256 of the data file it came from.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from . import data as data_mod
from .data import load_splits
from .errors import EnsembleError
from .metrics import score
from .predfile import align_predictions, check_ids, read_predictions, write_predictions
from .files import check_inside, refuse_pickles
from .progress import NULL, Progress
from .registry import MANIFEST, Candidate, Registry, prediction_entry
from .tasks import TASKS


def predict_into(stage: Path, model, tokenizer, tasks, splits: dict, device, precision: str = "fp32",
                 cache=None, known: dict | None = None, progress: Progress = NULL,
                 compile: bool = False) -> tuple[dict, dict]:
    """Write ``predictions/<task>-<split>.csv`` into ``stage`` for every loaded split of the tasks.

    Returns the manifest's ``predictions`` and ``metrics`` sections. ``known`` holds
    predictions already computed (dev evaluation during training), keyed like ``splits``.
    """
    from .infer import predict_split

    known = known or {}
    preds_manifest: dict[str, dict] = {}
    metrics: dict[str, dict] = {}
    (stage / "predictions").mkdir(parents=True, exist_ok=True)
    for (t, s), split in sorted(splits.items()):
        if t not in tasks:
            continue
        if (t, s) in known:
            ids, values = known[(t, s)]
        else:
            progress.start(f"predict {t} {s}", len(split))
            ids, values = predict_split(model, tokenizer, split, device=device, precision=precision,
                                        cache=cache, progress=progress, compile=compile)
        write_predictions(stage / "predictions" / f"{t}-{s}.csv", t, ids, values)
        preds_manifest.setdefault(t, {})[s] = prediction_entry(t, s, split.path, split.sha256, len(ids))
        if split.labelled:
            metrics.setdefault(t, {})[s] = score(t, values, split.labels)
    return preds_manifest, metrics


def copy_model_dir(src: Path, dst: Path) -> None:
    """Copy a model folder, refusing pickles and anything that leaves it."""
    src = Path(src)
    refuse_pickles(src)
    for p in sorted(src.rglob("*")):
        check_inside(src, p, "model folder")
        rel = p.relative_to(src)
        if p.is_dir():
            (dst / rel).mkdir(parents=True, exist_ok=True)
        elif p.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dst / rel)


def register_model(registry: Registry, path: Path, data_dir: Path, name: str | None = None,
                   device=None, precision: str = "fp32", progress: Progress = NULL, cache=None,
                   compile: bool = False) -> Candidate:
    """Register a model folder (this tool's format) or a candidate exported from another registry,
    running batched inference over the dev and test files of its tasks."""
    import json

    from .infer import check_precision, pick_device
    from .model import CONFIG_FILE, load_model

    path = Path(path)
    if not path.is_dir():
        raise EnsembleError(f"{path}: expected a candidate folder or a model folder")
    refuse_pickles(path)
    exported = (path / MANIFEST).is_file()
    model_src = path / "model" if exported else path
    if not (model_src / CONFIG_FILE).is_file():
        raise EnsembleError(
            f"{path}: neither a candidate folder (candidate.json + model/) nor a model folder ({CONFIG_FILE} + "
            "model.safetensors + tokenizer files); predictions from other code go in with --predictions"
        )
    old = json.loads((path / MANIFEST).read_text()) if exported else {}
    device = pick_device(device)
    check_precision(precision, device)
    model, tokenizer = load_model(model_src, device)
    tasks = list(model.config.tasks)
    splits = load_splits(data_dir, tasks, ("dev", "test"))

    def build(stage: Path) -> dict[str, Any]:
        copy_model_dir(model_src, stage / "model")
        preds, metrics = predict_into(stage, model, tokenizer, tasks, splits, device, precision, cache,
                                      progress=progress, compile=compile)
        return {
            "name": name or old.get("name") or path.name,
            "kind": "model",
            "architecture": model.config.name,
            "tasks": tasks,
            "parameters": model.num_parameters(),
            "model": {k: v for k, v in model.config.to_dict().items() if k != "encoder"},
            "training": old.get("training"),
            "source": {"registered_from": str(path.resolve()), "previous_id": old.get("id")},
            "precision": precision,
            "metrics": metrics,
            "predictions": preds,
        }

    return registry.add(build)


def register_predictions(registry: Registry, pred_dir: Path, name: str, data_dir: Path,
                         parameters: int | None = None) -> Candidate:
    """Register predictions made by other code: ``<task>-<split>.csv`` files (see ensemble.predfile).

    Each file's ids must be exactly those of the matching course file; every task found needs
    its dev file. Errors name the file and line."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise EnsembleError(f"--predictions {pred_dir}: expected a folder of <task>-<split>.csv files")
    found: dict[tuple[str, str], Path] = {}
    for t in TASKS:
        for s in ("dev", "test"):
            p = pred_dir / f"{t}-{s}.csv"
            if p.exists():
                check_inside(pred_dir, p, "prediction file")
                found[(t, s)] = p
    if not found:
        raise EnsembleError(
            f"--predictions {pred_dir}: no prediction files; expected files named <task>-<split>.csv "
            "(sst-dev.csv, sst-test.csv, para-dev.csv, para-test.csv, sts-dev.csv, sts-test.csv)"
        )
    tasks = sorted({t for t, _ in found}, key=list(TASKS).index)
    for t in tasks:
        if (t, "dev") not in found:
            raise EnsembleError(f"{pred_dir / f'{t}-test.csv'}: has no matching {t}-dev.csv; dev predictions are needed to select")
    splits = {k: data_mod.read_split(data_dir, *k) for k in found}
    loaded = {}
    for k, p in found.items():
        ids, values = read_predictions(p, k[0])
        check_ids(p, ids, splits[k].ids)
        loaded[k] = (ids, values)

    def build(stage: Path) -> dict[str, Any]:
        preds_manifest: dict[str, dict] = {}
        metrics: dict[str, dict] = {}
        (stage / "predictions").mkdir()
        for (t, s), (ids, values) in sorted(loaded.items()):
            write_predictions(stage / "predictions" / f"{t}-{s}.csv", t, ids, values)
            split = splits[(t, s)]
            preds_manifest.setdefault(t, {})[s] = prediction_entry(t, s, split.path, split.sha256, len(ids))
            if split.labelled:
                metrics.setdefault(t, {})[s] = score(t, align_predictions(stage, ids, values, split.ids), split.labels)
        return {"name": name, "kind": "predictions", "architecture": "external", "tasks": tasks,
                "parameters": parameters, "source": {"registered_from": str(pred_dir.resolve())},
                "metrics": metrics, "predictions": preds_manifest}

    return registry.add(build)


def refresh(registry: Registry, data_dir: Path, refs: list[str] | None = None, device=None,
            precision: str = "fp32", progress: Progress = NULL, force: bool = False,
            compile: bool = False) -> list[tuple[Candidate, list[str]]]:
    """Recompute the cached predictions of stale model candidates (or all named ones with force)."""
    from .infer import TokenCache, check_precision, pick_device
    from .model import load_model

    device = pick_device(device)
    check_precision(precision, device)
    cands = [registry.get(r) for r in refs] if refs else registry.candidates()
    hashes: dict[str, str] = {}
    cache = TokenCache()
    done = []
    for cand in cands:
        stale = cand.stale(data_dir, hashes)
        if not stale and not force:
            continue
        if cand.kind != "model":
            raise EnsembleError(
                f"candidate {cand.id} ({cand.name}) holds imported predictions only and is stale "
                f"({'; '.join(stale)}); re-export them from the code that made them and register again"
            )
        model, tokenizer = load_model(cand.model_dir, device)
        splits = load_splits(data_dir, cand.tasks, ("dev", "test"))

        def build(stage: Path, manifest: dict[str, Any]) -> dict[str, Any]:
            for f in (stage / "predictions").glob("*.csv"):
                f.unlink()
            preds, metrics = predict_into(stage, model, tokenizer, cand.tasks, splits, device, precision,
                                          cache, progress=progress, compile=compile)
            manifest["predictions"], manifest["metrics"] = preds, metrics
            manifest["precision"] = precision
            return manifest

        done.append((registry.update(cand.id, build), stale))
        del model
    return done
