"""The fields of a candidate's manifest (``candidate.json``): checked on every read, read through
:class:`ManifestFields` (the one place that knows their layout), and its seal.

A manifest is a document a user can edit. Before any of it is used, :func:`shape_problem` checks
it through its model (:class:`ensemble.documents.CandidateManifest`): the file list (relative paths
inside the folder, each with a sha256 and a size), the prediction entries (each ``file`` is the
one canonical ``predictions/<task>-<split>.csv`` of a known task and split, listed among the
files), the metrics (finite numbers or null), the tasks, the name, the model and training records. A manifest that fails is a damaged
candidate (left out of reads, named by ``verify``), never a traceback.

The seal (``"seal"``: the sha256 of the manifest's canonical JSON without it) is written by the
one manifest writer (format ``ensemble-candidate/2``) and checked by ``verify``: an edited metric,
name or record shows there, although the manifest is not in its own file list. A manifest of the
format before seals (``/1``) has none to check; its next rewrite seals it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import documents

SEAL = "seal"
UNSEALED_FORMAT = "ensemble-candidate/1"   # manifests written before seals: no seal expected
PREDICTION_SPLITS = ("dev", "test")


def seal_of(manifest: dict[str, Any]) -> str:
    """The sha256 of ``manifest``'s canonical JSON, its seal left out."""
    body = {k: v for k, v in manifest.items() if k != SEAL}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def seal_problem(manifest: dict[str, Any]) -> str | None:
    """Why the manifest's seal does not vouch for it (missing, or not its content's), else None."""
    seal = manifest.get(SEAL)
    if seal is None and manifest.get("format") == UNSEALED_FORMAT:
        return None   # written before seals: sealed at its next rewrite
    if seal is None:
        return "manifest has no seal (removed, or the manifest was written by hand); its fields are unchecked"
    if seal != seal_of(manifest):
        return "manifest edited after it was written (its seal does not match its content: a metric, name or record changed)"
    return None


def shape_problem(manifest: Any) -> str | None:
    """What is wrong with the fields of a manifest that reads, paths and tables rely on
    (:class:`ensemble.documents.CandidateManifest`: ``field: expected ...``), else None. Absent
    fields are allowed (a folder made by hand holds few); present ones must be whole."""
    return documents.problem(documents.CandidateManifest, manifest)


# -- reading the fields -------------------------------------------------------------------------
class StoredFile(NamedTuple):
    """A manifest's record of one stored file (None only in a manifest :func:`shape_problem` refuses)."""
    sha256: str | None
    size: int | None


@dataclass(frozen=True)
class PredictionRecord:
    """A manifest's record of one cached prediction file (written by
    :func:`ensemble.registry.candidate.prediction_entry`)."""
    task: str
    split: str
    file: str                # relative to the candidate folder: predictions/<task>-<split>.csv
    data_file: str | None    # the course file the predictions were made from (its plain name)
    data_sha256: str | None  # that file's sha256 then (compared by ``stale`` and ``predict``)
    rows: int | None


class ManifestFields:
    """Typed reads of a manifest's fields, for a class holding one as ``manifest`` (the registry's
    :class:`~ensemble.registry.candidate.Candidate`): the one place that knows their layout."""
    manifest: dict[str, Any]

    @property
    def recorded_id(self) -> Any:
        """The manifest's ``"id"`` as written (``verify`` names one that two folders share)."""
        return self.manifest.get("id")

    @property
    def kind(self) -> str:
        """``"model"`` (weights stored) or ``"predictions"`` (imported predictions only)."""
        return self.manifest.get("kind", "model")

    @property
    def tasks(self) -> list[str]:
        return list(self.manifest.get("tasks", []))

    @property
    def architecture(self) -> str | None:
        return self.manifest.get("architecture")

    @property
    def parameters(self) -> int | None:
        return self.manifest.get("parameters")

    @property
    def created(self) -> str | None:
        """When the candidate was stored (ISO 8601, UTC)."""
        return self.manifest.get("created")

    @property
    def model_config(self) -> dict[str, Any] | None:
        """The model's configuration, its encoder's left out (None: imported predictions)."""
        return self.manifest.get("model")

    @property
    def base(self) -> str | None:
        """The pretrained encoder the model started from."""
        return (self.model_config or {}).get("base")

    @property
    def training(self) -> dict[str, Any] | None:
        """The record of the training run that made it: config, run_id, epoch, fingerprint,
        run_complete, best_for, base_provenance (None: not trained by this tool)."""
        return self.manifest.get("training")

    @property
    def training_config(self) -> dict[str, Any]:
        """The training options of its run (empty: not trained by this tool)."""
        return (self.training or {}).get("config") or {}

    @property
    def run_id(self) -> str | None:
        return (self.training or {}).get("run_id")

    @property
    def epoch(self) -> int | None:
        return (self.training or {}).get("epoch")

    @property
    def fingerprint(self) -> str | None:
        """Its run's configuration and data, hashed (``TrainConfig.fingerprint``)."""
        return (self.training or {}).get("fingerprint")

    @property
    def run_complete(self) -> bool:
        """Whether its run was marked finished."""
        return bool((self.training or {}).get("run_complete"))

    @property
    def base_provenance(self) -> dict[str, Any] | None:
        """How its base was pretrained further (MLM steps, ...), when it was."""
        return (self.training or {}).get("base_provenance")

    @property
    def soup(self) -> dict[str, Any] | None:
        """A soup's record (``ensemble soup``: recipe, members, weights, steps, held-out), else None."""
        soup = self.manifest.get("soup")
        return soup if isinstance(soup, dict) else None

    @property
    def source(self) -> dict[str, Any]:
        """Where imported predictions came from (the files, rows the reader dropped); {} for a model."""
        source = self.manifest.get("source")
        return source if isinstance(source, dict) else {}

    def metric(self, task: str, split: str) -> float | None:
        return self.manifest.get("metrics", {}).get(task, {}).get(split)

    def dev_metric(self, task: str) -> float | None:
        return self.metric(task, "dev")

    @property
    def files(self) -> dict[str, StoredFile]:
        """Every stored file the manifest lists: path in the folder -> sha256 and size."""
        files = self.manifest.get("files", {})
        if not isinstance(files, dict):
            return {}
        return {rel: StoredFile(info.get("sha256"), info.get("size")) if isinstance(info, dict)
                else StoredFile(None, None) for rel, info in files.items()}

    def stored_sha256(self, rel: str) -> str | None:
        """The sha256 the manifest records for stored file ``rel`` (None: not listed)."""
        info = self.manifest.get("files", {}).get(rel)
        return info.get("sha256") if isinstance(info, dict) else None

    def prediction_splits(self, task: str) -> list[str]:
        """The splits of ``task`` with cached predictions (empty: none)."""
        return list(self.manifest.get("predictions", {}).get(task, {}))

    def has_predictions(self, task: str, split: str) -> bool:
        return split in self.prediction_splits(task)

    def prediction_record(self, task: str, split: str) -> PredictionRecord | None:
        entry = self.manifest.get("predictions", {}).get(task, {}).get(split)
        if entry is None:
            return None
        return PredictionRecord(task, split, entry["file"], entry.get("data_file"), entry.get("data_sha256"),
                                entry.get("rows"))

    def prediction_records(self) -> list[PredictionRecord]:
        """Every cached prediction file's record, in the manifest's order."""
        return [self.prediction_record(task, split)
                for task, splits in self.manifest.get("predictions", {}).items() for split in splits]

    def prediction_sha256(self, task: str, split: str) -> str | None:
        """The sha256 recorded for the cached ``task`` ``split`` predictions (None: none cached)."""
        record = self.prediction_record(task, split)
        return None if record is None else self.stored_sha256(record.file)
