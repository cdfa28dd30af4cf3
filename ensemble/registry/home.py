"""The data a registry was made from: ``<registry>/registry.json`` records the course data folder
(and the sha256 of its dev and test files) that its candidates' predictions were made from, written
atomically with the first candidate added. Every command resolves ``--data`` through it:

* without ``--data`` a command uses the recorded folder, never the packaged sample in its place;
* the packaged sample is the default only for a registry made from the sample, or one with no record
  (then only when its candidates were made from the sample, or it has none);
* a ``--data`` folder whose files differ from the recorded ones is refused in one line naming both
  folders (nothing is changed); the one command that may move a registry onto other data,
  ``register --refresh``, asks first.

No message here advises recomputing predictions on other data. Torch-free.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import PACKAGE_SAMPLE, resolve_data
from .. import documents
from ..errors import EnsembleError
from ..files import atomic_write_text, file_sha256
from ..tasks import TASKS
from .store import Registry

RECORD = "registry.json"
FORMAT = "ensemble-registry"
RECORDED_SPLITS = ("dev", "test")   # the files every candidate's cached predictions are bound to


@dataclass(frozen=True)
class DataChoice:
    """The data folder a command uses, whether it is the packaged sample, and whether it differs from
    the folder the registry records (only ever True where the caller allowed it: ``refresh``)."""
    folder: Path
    sample: bool
    other: bool = False
    recorded: Path | None = None


def data_hashes(folder: Path) -> dict[str, str]:
    """{file name: sha256} of the course's dev and test files present in ``folder``."""
    out = {}
    for t in TASKS.values():
        for s in RECORDED_SPLITS:
            p = Path(folder) / t.file_name(s)
            if p.is_file():
                out[p.name] = file_sha256(p)
    return out


def read_record(root: Path) -> dict[str, Any] | None:
    """The registry's data record, or None when it has none; a damaged one is an error naming it."""
    path = Path(root) / RECORD
    if not path.is_file():
        return None
    what = ("the registry's record of its data folder (delete it and pass --data: the next candidate added "
            "writes it again)")
    doc = documents.load_json(path, what=what)
    problem = documents.problem(documents.RegistryRecord, doc)
    if problem:
        raise EnsembleError(f"{path}: {problem}; expected {what}")
    return doc


def recorded_folder(doc: dict[str, Any]) -> Path:
    """The folder a record names (the packaged sample wherever the package now lives)."""
    return PACKAGE_SAMPLE if doc.get("sample") else Path(doc["data"])


def remember(registry: Registry, folder: Path, replace: bool = False) -> None:
    """Record ``folder`` as the registry's data (when it has no record yet, or ``replace``). A registry
    from before the record whose candidates were made from other files is left unrecorded: which data
    it belongs to is not this folder's to claim."""
    if not replace and read_record(registry.root) is not None:
        return
    folder = Path(folder).resolve()
    hashes = data_hashes(folder)
    if not replace and not _made_from(registry, hashes):
        return
    doc = {"format": FORMAT, "data": str(folder), "sample": folder == PACKAGE_SAMPLE.resolve(), "files": hashes}
    registry.ensure()
    atomic_write_text(registry.root / RECORD, json.dumps(doc, indent=2, sort_keys=True) + "\n")


def differing(doc: dict[str, Any], folder: Path) -> list[str]:
    """The recorded files that ``folder`` lacks or holds with other contents (none: the same data)."""
    if Path(folder).resolve() == recorded_folder(doc).resolve():
        return []   # the recorded folder itself: files changed there are each candidate's staleness
    out = []
    for name, sha in sorted(doc["files"].items()):
        p = Path(folder) / name
        if not p.is_file() or file_sha256(p) != sha:
            out.append(name)
    return out


def _other_data(registry: Registry, doc: dict[str, Any], folder: Path, names: list[str]) -> EnsembleError:
    made = recorded_folder(doc)
    what = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return EnsembleError(f"these candidates were made from {made}; you passed --data {folder}, whose {what} "
                         f"differ{'s' if len(names) == 1 else ''}: did you mean --data {made}? Nothing was changed "
                         f"(the record is {registry.root / RECORD}; candidates of other data go in another --registry)")


def _made_from(registry: Registry, hashes: dict[str, str]) -> bool:
    """Whether every candidate's cached predictions are bound to these files (true when it has none)."""
    if not registry.exists:
        return True
    for c in registry.candidates():
        for e in c.prediction_records():
            if e.data_file in hashes and e.data_sha256 != hashes[e.data_file]:
                return False
    return True


def data_for(registry: Registry | Path, data: Path | None, other_ok: bool = False) -> DataChoice:
    """The data folder a command on ``registry`` uses: ``data`` (``--data`` or ``ENSEMBLE_DATA``)
    when given, else the recorded folder, else :func:`ensemble.data.resolve_data`'s default.
    A given folder whose files differ from the recorded ones is an error unless ``other_ok``."""
    registry = registry if isinstance(registry, Registry) else Registry(registry)
    doc = read_record(registry.root)
    if data is not None:
        folder, sample = resolve_data(data)
        if doc is None:
            return DataChoice(folder, sample)
        names = differing(doc, folder)
        if names and not other_ok:
            raise _other_data(registry, doc, folder, names)
        return DataChoice(folder, sample, bool(names), recorded_folder(doc))
    if doc is not None:
        folder = recorded_folder(doc)
        if not folder.is_dir():
            raise EnsembleError(f"these candidates were made from {folder}, which is no longer a folder "
                                f"({registry.root / RECORD}); pass --data with the folder that holds those course "
                                "files now")
        return DataChoice(folder, bool(doc.get("sample")), False, folder)
    folder, sample = resolve_data(None)
    if sample and not _made_from(registry, data_hashes(PACKAGE_SAMPLE)):
        raise EnsembleError(f"the candidates in {registry.root} were not made from the packaged sample, and no "
                            "--data was given: pass --data with the course data folder they were made from")
    return DataChoice(folder, sample)
