"""The registry's folder and its ``ensembles/`` folder: where a registry lives (made by the first
writer, never by a reader), and the saved ensembles' documents in it (one JSON file each,
:mod:`ensemble.registry.saved`), written and removed under the registry's lock.

:class:`ensemble.registry.store.Registry` holds one of each: the lock is its own and given to
:class:`EnsembleFiles`, so a saved ensemble and a candidate never change under each other.
"""
from __future__ import annotations

import json
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Callable

from .candidate import is_plain_name, try_read
from .saved import check_ensemble_name, read_ensemble_file
from .. import documents
from ..errors import EnsembleError
from ..files import atomic_write_text, fault_point


class RegistryFolder:
    """The registry's folder: made by the first write, never by a reader."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise EnsembleError(f"{self.root}: is a file, not a registry folder; expected --registry to name a "
                                "folder (made by `ensemble train` or `ensemble register` when missing)")

    @property
    def candidates_dir(self) -> Path:
        return self.root / "candidates"

    @property
    def exists(self) -> bool:
        """Whether a writer has made the registry here yet."""
        return self.candidates_dir.is_dir()

    def existing(self) -> None:
        """Readers: an error naming the path where there is no registry (a typo never makes one)."""
        if not self.exists:
            raise EnsembleError(f"{self.root}: no registry here (expected a folder made by `ensemble train` "
                                "or `ensemble register`)")

    def ensure(self) -> None:
        """Writers: the registry's folders, made on the first write."""
        for d in ("candidates", "ensembles", ".staging", ".trash"):
            (self.root / d).mkdir(parents=True, exist_ok=True)


def _names_member(path: Path, cid: str) -> bool:
    """Whether the saved ensemble at ``path`` has ``cid`` among some task's members (a damaged
    document names nobody: ``load_ensemble`` reports it when it is used)."""
    try:
        doc = documents.load_json(path)
    except EnsembleError:
        return False
    tasks = doc.get("tasks") if isinstance(doc, dict) else None
    return any(cid in (t.get("weights") or {}) or cid in (t.get("members") or [])
               for t in (tasks or {}).values() if isinstance(t, dict))


def _member_problems(candidates_dir: Path, doc: dict[str, Any]) -> list[str]:
    """Why the ensemble ``doc`` cannot be saved: a member (of some task's weights, members or
    prediction hashes) that is not a readable candidate of the registry, or whose cached
    predictions' sha256 now differs from the one recorded in ``doc``."""
    problems = []
    for task, entry in (doc.get("tasks") or {}).items():
        hashes = entry.get("prediction_sha256") or {}
        for cid in sorted({*(entry.get("weights") or {}), *(entry.get("members") or []), *hashes}, key=str):
            cand = try_read(candidates_dir / cid)[0] if is_plain_name(cid) else None
            if cand is None:
                problems.append(f"member {cid} ({task}) is no longer in the registry")
                continue
            for split, want in sorted((hashes.get(cid) or {}).items()):
                have = cand.prediction_sha256(task, split)
                if have != want:
                    problems.append(f"member {cid}'s {task} {split} predictions changed (sha256 {have}, "
                                    f"selected with {want})")
    return problems


class EnsembleFiles:
    """The ``ensembles/`` folder of the registry at ``folder``: one JSON document per selected
    ensemble; ``lock()`` is the registry's, taken while a document is written or removed."""

    def __init__(self, folder: RegistryFolder, lock: Callable[[], AbstractContextManager]):
        self.folder = folder
        self.lock = lock

    @property
    def ensembles_dir(self) -> Path:
        return self.folder.root / "ensembles"

    def save_ensemble(self, name: str, doc: dict[str, Any]) -> Path:
        check_ensemble_name(name)
        self.folder.ensure()
        path = self.ensembles_dir / f"{name}.json"
        with self.lock():   # a `remove` cannot take a member away between the check and the write
            problems = _member_problems(self.folder.candidates_dir, doc)
            if problems:
                raise EnsembleError(f"ensemble {name} not saved: " + "; ".join(problems)
                                    + " (changed while `ensemble select` ran?); run `ensemble select` again")
            fault_point("registry.ensemble")
            atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
        return path

    def load_ensemble(self, name: str | None = None) -> dict[str, Any]:
        """A saved ensemble by name; without a name, the newest one."""
        return read_ensemble_file(self._ensemble_path(name))

    def remove_ensemble(self, name: str) -> Path:
        """Delete the saved ensemble ``name`` (a saved name, never a path), under the lock."""
        with self.lock():
            if name not in self.ensemble_names():
                raise EnsembleError(f"no saved ensemble {name!r} in {self.ensembles_dir} "
                                    "(`ensemble ensembles list` shows them)")
            path = self.ensembles_dir / f"{name}.json"
            path.unlink()
        return path

    def ensemble_names(self) -> list[str]:
        """The saved ensembles' names, oldest saved first (read only)."""
        self.folder.existing()
        return [p.stem for p in sorted(self.ensembles_dir.glob("*.json"), key=lambda p: p.stat().st_mtime)]

    def ensembles_naming(self, cid: str) -> list[str]:
        """The saved ensembles that have candidate ``cid`` as a member of some task (read only)."""
        self.folder.existing()
        return [p.stem for p in sorted(self.ensembles_dir.glob("*.json")) if _names_member(p, cid)]

    def _ensemble_path(self, name: str | None) -> Path:
        self.folder.existing()
        if name is None:
            names = self.ensemble_names()
            if not names:
                raise EnsembleError(f"no selected ensemble in {self.ensembles_dir}; run `ensemble select` first")
            name = names[-1]
        path = self.ensembles_dir / f"{check_ensemble_name(name)}.json"   # a saved name, never a path
        if not path.exists():
            have = ", ".join(p.stem for p in sorted(self.ensembles_dir.glob("*.json"))) or "none"
            raise EnsembleError(f"no ensemble {name!r} in {self.ensembles_dir} (have: {have})")
        return path
