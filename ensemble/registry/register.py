"""Putting candidates into the registry: model folders, exported candidates, imported predictions,
refreshed predictions, and the pieces a trained model's candidate is made of (its prediction files
and manifest; :mod:`ensemble.registry.keeper` turns training epochs into candidates with them).

Every model candidate carries unrounded dev and test predictions computed by the one batched
inference path (:mod:`ensemble.modeling.infer`), each bound to the sha256 of the data file it came from.
torch is imported only where a model runs, so registering imported predictions stays light.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .candidate import MANIFEST, Candidate, check_model, prediction_entry
from ..data import Split, check_plain_ids, load_splits, read_split
from .. import documents
from ..errors import EnsembleError, shown
from ..files import check_inside, file_sha256, refuse_pickles
from ..predfile import align_predictions, check_ids, prediction_file_name, read_predictions, write_predictions
from ..progress import NULL, Progress
from .store import Registry
from .home import remember
from ..tasks import TASKS, is_plain_id

if TYPE_CHECKING:
    from ..modeling.config import ModelConfig

Loaded = dict[tuple[str, str], tuple[list[str], Any]]   # (task, split) -> (ids, unrounded values)


# -- the candidate's contents -------------------------------------------------------------------
def write_prediction_files(stage: Path, loaded: Loaded, splits: dict[tuple[str, str], Split]) -> tuple[dict, dict]:
    """Write ``predictions/<task>-<split>.csv`` into ``stage`` for each loaded (task, split);
    returns the manifest's ``predictions`` and ``metrics`` sections (metrics where labelled)."""
    from ..metrics import score   # here: numpy loads when predictions are scored, not with the command line

    preds_manifest: dict[str, dict] = {}
    metrics: dict[str, dict] = {}
    (stage / "predictions").mkdir(parents=True, exist_ok=True)
    for (t, s), (ids, values) in sorted(loaded.items()):
        write_predictions(stage / "predictions" / prediction_file_name(t, s), t, ids, values)
        split = splits[(t, s)]
        preds_manifest.setdefault(t, {})[s] = prediction_entry(t, s, split.path, split.sha256, len(ids))
        if split.labelled:
            metrics.setdefault(t, {})[s] = score(t, align_predictions(stage, ids, values, split.ids), split.labels)
    return preds_manifest, metrics


def predict_into(stage: Path, model, tokenizer, tasks, splits: dict, device, precision: str = "fp32",
                 cache=None, known: Loaded | None = None, progress: Progress = NULL,
                 compile: bool = False) -> tuple[dict, dict]:
    """Predict every loaded split of the tasks and write the files (see :func:`write_prediction_files`).

    ``known`` holds predictions already computed (dev evaluation during training), keyed like ``splits``.
    """
    from ..modeling.infer import predict_split  # lazy: torch

    known = known or {}
    loaded: Loaded = {}
    for (t, s), split in sorted(splits.items()):
        if t not in tasks:
            continue
        if (t, s) in known:
            loaded[(t, s)] = known[(t, s)]
        else:
            progress.start(f"predict {t} {s}", len(split))
            loaded[(t, s)] = predict_split(model, tokenizer, split, device=device, precision=precision,
                                           cache=cache, progress=progress, compile=compile)
    return write_prediction_files(stage, loaded, splits)


def model_manifest(name: str, config: ModelConfig, parameters: int, training: dict[str, Any] | None,
                   precision: str, predictions: dict, metrics: dict, **extra: Any) -> dict[str, Any]:
    """The manifest fields of a model candidate (the registry adds id, created, format, files)."""
    return {
        "name": name,
        "kind": "model",
        "architecture": config.name,
        "tasks": list(config.tasks),
        "parameters": parameters,
        "model": {k: v for k, v in config.to_dict().items() if k != "encoder"},
        "training": training,
        "precision": precision,
        "metrics": metrics,
        "predictions": predictions,
        **extra,
    }


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


# -- the same content twice --------------------------------------------------------------------
def already_registered(registry: Registry, files: dict[str, str]) -> Candidate | None:
    """The candidate that already stores every one of ``files`` (path in the candidate -> sha256)."""
    if not registry.exists:
        return None
    for c in registry.candidates():
        if all(c.stored_sha256(rel) == sha for rel, sha in files.items()):
            return c
    return None


def refuse_twice(registry: Registry, files: dict[str, str], what: str,
                 again: str = "`ensemble register --again`") -> None:
    """An error naming the candidate that already holds this content (nothing is added)."""
    c = already_registered(registry, files)
    if c is not None:
        raise EnsembleError(f"{what}: already registered as candidate {c.id} ({c.name}), same content (sha256); "
                            f"nothing added ({again} adds a second copy)")


# -- model folders ------------------------------------------------------------------------------
def _model_source(path: Path) -> tuple[Path, dict[str, Any]]:
    """The model folder inside ``path`` (itself, or ``model/`` of an exported candidate) and the
    exported candidate's manifest (empty for a plain model folder)."""
    from ..modeling.config import CONFIG_FILE

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
    return model_src, _exported_manifest(path / MANIFEST) if exported else {}


def _exported_manifest(f: Path) -> dict[str, Any]:
    """An exported candidate's ``candidate.json`` (its name, training record and id are kept)."""
    manifest = documents.load_json(f, what="the manifest of an exported candidate")
    problem = documents.problem(documents.CandidateManifest, manifest)
    if problem:
        raise EnsembleError(f"{f}: {problem}; expected the manifest of an exported candidate")
    name, cid = manifest.get("name"), manifest.get("id")
    if name is not None and not (isinstance(name, str) and name.strip() and len(name) <= 200):
        raise EnsembleError(f"{f}: field name {shown(name)}: expected a non-empty string of at most 200 characters")
    if cid is not None and not (isinstance(cid, str) and is_plain_id(cid) and len(cid) <= 100):
        raise EnsembleError(f"{f}: field id {shown(cid)}: expected a plain candidate id")
    manifest["training"] = checked_training(f, manifest.get("training"))
    return manifest


TRAINING_FIELDS = ("config", "epoch", "run_id", "fingerprint", "data", "best_for", "run_complete", "base_provenance")


def _config_types(where: str, config: dict[str, Any]) -> None:
    """Each option of an imported training config of its TrainConfig type (read from the dataclass)."""
    import dataclasses
    import types
    import typing

    from ..training.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    known = {f.name for f in dataclasses.fields(TrainConfig) if f.init}
    for key, value in config.items():
        if key not in known:
            raise EnsembleError(f"{where}.config.{shown(key)}: unknown `train` option")
        hint, optional = hints[key], False
        args = typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
            hint, optional = next(a for a in args if a is not type(None)), True
        if value is None and optional:
            continue
        if key == "tasks":
            ok = isinstance(value, list) and all(isinstance(t, str) for t in value)
        else:
            ok = {float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
                  int: lambda v: type(v) is int, str: lambda v: isinstance(v, str) and len(v) <= 4096,
                  bool: lambda v: isinstance(v, bool)}.get(hint, lambda v: True)(value)
        if not ok:
            raise EnsembleError(f"{where}.config.{key} {shown(value)}: expected "
                                + ("a list of task names" if key == "tasks" else
                                   {float: "a number", int: "an integer", str: "a string",
                                    bool: "true or false"}.get(hint, str(hint))))


def checked_training(f: Path, training: Any) -> dict[str, Any] | None:
    """An imported manifest's ``training`` record checked as the tool writes it (:class:`EpochKeeper`):
    None, or an object of :data:`TRAINING_FIELDS` (older exports may lack some) whose config is a valid
    TrainConfig, epoch a positive integer, run id a plain name, data a map of file -> sha256, best_for
    task names and run_complete true or false. An error names the file and the field."""
    from ..training.config import TrainConfig

    if training is None:
        return None
    where = f"{f}: field training"
    if not isinstance(training, dict):
        raise EnsembleError(f"{where} {shown(training)}: expected an object (the run that made it) or null")
    unknown = [k for k in training if k not in TRAINING_FIELDS]
    if unknown:
        raise EnsembleError(f"{where}: unknown field {shown(unknown[0])}; expected only {', '.join(TRAINING_FIELDS)}")

    def bad(key: str, expected: str) -> EnsembleError:
        return EnsembleError(f"{where}.{key} {shown(training[key])}: expected {expected}")
    config = training.get("config")
    if config is not None:
        if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
            raise bad("config", "an object of `train` options")
        _config_types(where, config)
        try:
            TrainConfig(**{**config, **({"tasks": tuple(config["tasks"])} if isinstance(config.get("tasks"), list)
                                        else {})})
        except EnsembleError as e:
            raise EnsembleError(f"{where}.config: {e}") from None
        except (TypeError, ValueError) as e:
            raise EnsembleError(f"{where}.config: {shown(str(e))}; expected the `train` options of the run") from None
    epoch = training.get("epoch")
    if epoch is not None and (type(epoch) is not int or epoch < 1):
        raise bad("epoch", "a positive integer")
    run_id = training.get("run_id")
    if run_id is not None and not (isinstance(run_id, str) and is_plain_id(run_id) and len(run_id) <= 100
                                   and not any(c in run_id for c in "/\\") and run_id not in (".", "..")):
        raise bad("run_id", "a plain run id (no '/', '..', commas, quotes or spaces)")
    fp = training.get("fingerprint")
    if fp is not None and not (isinstance(fp, str) and fp.isalnum() and len(fp) <= 64):
        raise bad("fingerprint", "a hexadecimal fingerprint")
    data = training.get("data")
    if data is not None and not (isinstance(data, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                                 for k, v in data.items())):
        raise bad("data", "an object of course file -> sha256")
    best = training.get("best_for")
    if best is not None and not (isinstance(best, list) and all(isinstance(t, str) and t in TASKS for t in best)):
        raise bad("best_for", f"a list of task names among {', '.join(TASKS)}")
    if "run_complete" in training and not isinstance(training["run_complete"], bool):
        raise bad("run_complete", "true or false")
    prov = training.get("base_provenance")
    if prov is not None and not isinstance(prov, dict):
        raise bad("base_provenance", "an object or null")
    return training


def register_model(registry: Registry, path: Path, data_dir: Path, name: str | None = None,
                   device=None, precision: str = "fp32", progress: Progress = NULL, cache=None,
                   compile: bool = False, force: bool = False) -> Candidate:
    """Register a model folder (this tool's format) or a candidate exported from another registry,
    running batched inference over the dev and test files of its tasks. Weights already in the
    registry (same sha256) are refused unless ``force``."""
    from ..modeling.infer import check_precision, pick_device  # lazy: torch
    from ..modeling.model import WEIGHTS_FILE, load_model  # lazy: torch

    path = Path(path)
    model_src, old = _model_source(path)
    device = pick_device(device)
    check_precision(precision, device)
    if not force and (model_src / WEIGHTS_FILE).is_file():   # before the model is loaded: a hash is cheap
        refuse_twice(registry, {f"model/{WEIGHTS_FILE}": file_sha256(model_src / WEIGHTS_FILE)}, str(path))
    model, tokenizer = load_model(model_src, device)
    tasks = list(model.config.tasks)
    splits = load_splits(data_dir, tasks, ("dev", "test"))
    for sp in splits.values():   # their ids go into the prediction files: checked before inference
        check_plain_ids(sp)

    def build(stage: Path) -> dict[str, Any]:
        copy_model_dir(model_src, stage / "model")
        preds, metrics = predict_into(stage, model, tokenizer, tasks, splits, device, precision, cache,
                                      progress=progress, compile=compile)
        return model_manifest(name or old.get("name") or path.name, model.config, model.num_parameters(),
                              old.get("training"), precision, preds, metrics,
                              source={"registered_from": str(path.resolve()), "previous_id": old.get("id")})

    cand = registry.add(build)
    remember(registry, data_dir)
    return cand


# -- predictions made by other code -------------------------------------------------------------
def has_prediction_files(path: Path) -> bool:
    """Whether ``path`` is a folder holding any ``<task>-<split>.csv`` (the richer format wins)."""
    return Path(path).is_dir() and any((Path(path) / prediction_file_name(t, s)).is_file()
                                       for t in TASKS for s in ("dev", "test"))


def _find_prediction_files(pred_dir: Path) -> dict[tuple[str, str], Path]:
    """The ``<task>-<split>.csv`` files in ``pred_dir``; every task found needs its dev file."""
    if not pred_dir.is_dir():
        raise EnsembleError(f"--predictions {pred_dir}: expected a folder of <task>-<split>.csv files")
    found: dict[tuple[str, str], Path] = {}
    for t in TASKS:
        for s in ("dev", "test"):
            p = pred_dir / prediction_file_name(t, s)
            if p.exists():
                check_inside(pred_dir, p, "prediction file")
                found[(t, s)] = p
    if not found:
        there = sorted(p.name for p in pred_dir.iterdir() if p.is_file())[:6]
        raise EnsembleError(
            f"--predictions {pred_dir}: no prediction files (found {', '.join(there) or 'no files'}); expected "
            "unrounded predictions named <task>-<split>.csv (sst-dev.csv, sst-test.csv, para-dev.csv, para-test.csv, "
            "sts-dev.csv, sts-test.csv), or the course's leaderboard files <task>-<split>-output.csv or a submission "
            "zip (hard labels: they vote)"
        )
    for t in TASKS:
        if (t, "test") in found and (t, "dev") not in found:
            raise EnsembleError(f"{found[(t, 'test')]}: has no matching {prediction_file_name(t, 'dev')}; "
                                "dev predictions are needed to select")
    return found


def register_predictions(registry: Registry, pred_dir: Path, name: str, data_dir: Path,
                         parameters: int | None = None, force: bool = False) -> Candidate:
    """Register predictions made by other code: ``<task>-<split>.csv`` files (see ensemble.predfile).

    Each file's ids must be exactly those of the matching course file (the ids of Quora rows the
    reader drops for an empty label are dropped too, and counted); every task found needs its dev
    file. Errors name the file and line. Prediction files already in the registry (the same stored
    sha256s) are refused unless ``force``."""
    if parameters is not None and parameters < 1:
        raise EnsembleError(f"--parameters {parameters}: expected a positive integer (the model's parameter count)")
    pred_dir = Path(pred_dir)
    found = _find_prediction_files(pred_dir)
    splits = {k: read_split(data_dir, *k) for k in found}
    loaded: Loaded = {}
    dropped: dict[str, list[str]] = {}
    for k, p in found.items():
        ids, values = read_predictions(p, k[0])
        loaded[k] = reader_rows(p, ids, values, splits[k], dropped)
    return add_imported(registry, loaded, splits, name, "predictions", f"--predictions {pred_dir}",
                        {"registered_from": str(pred_dir.resolve())}, parameters, force, dropped)


def reader_rows(where: str | Path, ids: list[str], values: Any, split: Split,
                dropped: dict[str, list[str]]) -> tuple[list[str], Any]:
    """``(ids, values)`` without the rows of ids the course reader drops (Quora rows with an empty
    label: the course's loader skips them, so no model is scored on them), each recorded in
    ``dropped`` under ``<task>-<split>``; then the ids checked against the split's."""
    skipped = {sid for _, sid in split.skipped}
    gone = [i for i in ids if i in skipped]
    if gone:
        keep = [n for n, i in enumerate(ids) if i not in skipped]
        ids, values = [ids[n] for n in keep], values[keep]
        dropped[f"{split.task}-{split.split}"] = gone
    check_ids(where, ids, split.ids)
    return ids, values


def dropped_note(cand: Candidate) -> list[str]:
    """One line per imported file whose rows the reader drops (the empty-label Quora rows)."""
    return dropped_lines(cand.source.get("dropped_rows") or {})


def dropped_lines(dropped: dict[str, list[str]]) -> list[str]:
    """One line per ``<task>-<split>`` of ``dropped``: how many rows, which, and why."""
    out = []
    for key, ids in dropped.items():
        out.append(f"{key}: {len(ids)} row{'s' if len(ids) != 1 else ''} dropped ({', '.join(ids[:3])}"
                   f"{', ...' if len(ids) > 3 else ''}): the course's reader skips {'them' if len(ids) != 1 else 'it'} "
                   "for an empty label, so no model is scored on it")
    return out


def add_imported(registry: Registry, loaded: Loaded, splits: dict[tuple[str, str], Split], name: str, kind: str,
                 what: str, source: dict[str, Any], parameters: int | None = None, force: bool = False,
                 dropped: dict[str, list[str]] | None = None, architecture: str = "external") -> Candidate:
    """Add one candidate of imported values (``kind`` "predictions" or "labels") atomically; the
    same prediction files already in the registry are refused unless ``force``. Every task needs
    its dev split. The registry records the data folder with its first candidate."""
    for t in {t for t, _ in loaded}:
        if (t, "dev") not in loaded:
            raise EnsembleError(f"{what}: task {t} has test values but no dev values; dev is needed to select")
    tasks = sorted({t for t, _ in loaded}, key=list(TASKS).index)
    source = {**source, **({"dropped_rows": dropped} if dropped else {})}

    def build(stage: Path) -> dict[str, Any]:
        preds_manifest, metrics = write_prediction_files(stage, loaded, splits)
        if not force:
            refuse_twice(registry, {f"predictions/{p.name}": file_sha256(p) for p in (stage / "predictions").glob("*.csv")},
                         what, "again=True" if what.startswith("log_candidate") else "`ensemble register --again`")
        return {"name": name, "kind": kind, "architecture": architecture, "tasks": tasks,
                "parameters": parameters, "source": source, "metrics": metrics, "predictions": preds_manifest}

    cand = registry.add(build)
    remember(registry, next(iter(splits.values())).path.parent)
    return cand


# -- stale predictions --------------------------------------------------------------------------
def refresh_plan(registry: Registry, data_dir: Path, refs: list[str] | None = None,
                 force: bool = False) -> list[tuple[Candidate, list[str]]]:
    """The candidates ``refresh`` would recompute, each with its stale files (empty when forced);
    an imported one that is stale is an error (no model to run)."""
    cands = [registry.get(r) for r in refs] if refs else registry.candidates()
    hashes: dict[str, str] = {}
    plan = []
    for cand in cands:
        stale = cand.stale(data_dir, hashes)
        if not stale and (not force or cand.kind != "model"):
            continue   # forced: the model candidates (imported ones have no model to run)
        if cand.kind != "model":
            raise EnsembleError(
                f"candidate {cand.id} ({cand.name}) holds imported predictions only and is stale "
                f"({'; '.join(stale)}); re-export them from the code that made them and register again"
            )
        plan.append((cand, stale))
    return plan


def refresh(registry: Registry, data_dir: Path, refs: list[str] | None = None, device=None,
            precision: str = "fp32", progress: Progress = NULL, force: bool = False,
            compile: bool = False, plan: list[tuple[Candidate, list[str]]] | None = None
            ) -> list[tuple[Candidate, list[str]]]:
    """Recompute the cached predictions of stale model candidates (or all named ones with force):
    those of ``plan`` (:func:`refresh_plan`, which the command shows and confirms first)."""
    from ..modeling.infer import TokenCache, check_precision, pick_device  # lazy: torch
    from ..modeling.model import load_model  # lazy: torch

    device = pick_device(device)
    check_precision(precision, device)
    plan = refresh_plan(registry, data_dir, refs, force) if plan is None else plan
    cache = TokenCache()
    done = []
    for cand, stale in plan:
        check_model(cand)
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
