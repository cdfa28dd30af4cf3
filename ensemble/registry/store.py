"""The checkpoint registry: candidates with their weights and cached, unrounded predictions.

Layout (everything a candidate needs sits in its own folder; nothing is shared between them)::

    <registry>/
      candidates/<id>/                  one candidate (see ensemble.registry.candidate)
      ensembles/<name>.json             selected ensembles: members, weights, prediction hashes
      .staging/<n>/, .staging/<n>.lock  candidates being written, each owned by an flock on its lock file
      .trash/                           candidates being replaced or removed
      .lock                             taken while live candidates or ensembles change

Writes are atomic: a candidate is written aside in ``.staging`` and renamed into
``candidates/`` in one step, so readers never see half a candidate, an interrupted write leaves
the registry as it was, and concurrent writers (each with its own fresh id) all land. Updating
a candidate (new predictions) writes a complete new folder (weights hard-linked) and swaps it in
under the lock. What a killed writer leaves is put back or removed when the registry is opened
(:mod:`ensemble.registry.recovery`); a folder whose manifest cannot be read is left out of every read
(:meth:`Registry.scan`), never hiding the others.

Storage only (no torch): what goes into a candidate is :mod:`ensemble.registry.register`'s business.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

from .candidate import (
    MANIFEST, Candidate, Problem, check_seal, damage_error, now_iso, seal_manifest, try_read, verify_folder, write_manifest,
)
from ..errors import EnsembleError
from ..files import fault_point
from .recovery import folder_lock, owned_stage, recover
from .ensembles import EnsembleFiles, RegistryFolder


def _linked_copy(src: Path, stage: Path) -> None:
    """Hard-link every file of ``src`` but its manifest into ``stage`` (files are never modified
    in place, so links are safe)."""
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if p.is_dir():
            (stage / rel).mkdir(parents=True, exist_ok=True)
        elif p.name != MANIFEST:
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(p, stage / rel)


def _shared_ids(checked: list[Candidate]) -> list[Problem]:
    """A problem for each folder whose manifest's id is also another folder's manifest's id."""
    folders: dict[Any, list[str]] = {}
    for c in checked:
        folders.setdefault(json.dumps(c.recorded_id), []).append(c.path.name)
    return [Problem(name, MANIFEST, f"manifest id {json.loads(key)!r} is also the id in folder(s) "
                    f"{', '.join(repr(n) for n in names if n != name)}")
            for key, names in folders.items() if len(names) > 1 for name in names]


# -- the registry -------------------------------------------------------------------------------
class Registry:
    """The registry folder: reading, adding, swapping and removing candidates; its selected
    ensembles are an :class:`~ensemble.registry.ensembles.EnsembleFiles` (``self.ensembles``)
    holding this registry's lock, their methods offered here too. Storage only: what goes into a
    candidate is :mod:`ensemble.registry.register`'s business."""

    def __init__(self, root: Path | str):
        """Nothing is created here: writers make the folders on their first write (:meth:`ensure`),
        readers of a folder that holds no registry get an error (:meth:`_existing`)."""
        self.folder = RegistryFolder(root)
        self.root = self.folder.root
        recover(self.root)
        self.ensembles = EnsembleFiles(self.folder, self.lock)

    def lock(self):
        self._existing()   # a lock is for changing candidates that exist: no registry made by it
        return folder_lock(self.root)

    # -- the folder ---------------------------------------------------------------------------
    @property
    def candidates_dir(self) -> Path:
        return self.folder.candidates_dir

    @property
    def exists(self) -> bool:
        """Whether a writer has made the registry here yet."""
        return self.folder.exists

    def _existing(self) -> None:
        self.folder.existing()

    def ensure(self) -> None:
        self.folder.ensure()

    # -- the saved ensembles (:class:`~ensemble.registry.ensembles.EnsembleFiles`) --------------
    @property
    def ensembles_dir(self) -> Path:
        return self.ensembles.ensembles_dir

    def save_ensemble(self, name: str, doc: dict[str, Any]) -> Path:
        return self.ensembles.save_ensemble(name, doc)

    def load_ensemble(self, name: str | None = None) -> dict[str, Any]:
        """A saved ensemble by name; without a name, the newest one."""
        return self.ensembles.load_ensemble(name)

    def remove_ensemble(self, name: str) -> Path:
        return self.ensembles.remove_ensemble(name)

    def ensemble_names(self) -> list[str]:
        return self.ensembles.ensemble_names()

    def ensembles_naming(self, cid: str) -> list[str]:
        return self.ensembles.ensembles_naming(cid)

    # -- reading ------------------------------------------------------------------------------
    def scan(self) -> tuple[list[Candidate], list[Problem]]:
        """The readable candidates, oldest first, and what is wrong with each damaged folder (an
        unreadable or foreign manifest, a symlinked folder): one damaged folder never hides the others."""
        self._existing()
        good: list[Candidate] = []
        damaged: list[Problem] = []
        for d in sorted(self.candidates_dir.iterdir()):
            if d.is_dir() or d.is_symlink():
                cand, problem = try_read(d)
                if problem:
                    damaged.append(problem)
                else:
                    good.append(cand)
        good.sort(key=lambda c: (c.created or "", c.id))
        return good, damaged

    def candidates(self) -> list[Candidate]:
        """The readable candidates, oldest first (damaged folders left out: :meth:`scan`)."""
        return self.scan()[0]

    def get(self, ref: str) -> Candidate:
        """A candidate by id, unique id prefix, unique name, or the unique start of a name."""
        return self.get_many([ref])[0]

    def get_many(self, refs: list[str]) -> list[Candidate]:
        """Candidates by id, unique id prefix or unique name, from one read of the manifests."""
        cands, damaged = self.scan()
        return [self._match(ref, cands, damaged) for ref in refs]

    def find(self, ref: str) -> tuple[Candidate, Problem | None]:
        """A candidate by reference (:meth:`get`), or the damaged folder named exactly ``ref``, as
        a candidate with an empty manifest, with what is wrong with it (what ``remove`` deletes)."""
        cands, damaged = self.scan()
        for p in damaged:
            if p.candidate == ref:
                return Candidate(self.candidates_dir / ref, {}), p
        return self._match(ref, cands, damaged), None

    def _match(self, ref: str, cands: list[Candidate], damaged: list[Problem] = ()) -> Candidate:
        exact = [c for c in cands if c.id == ref]
        if exact:
            return exact[0]
        matches = [c for c in cands if c.id.startswith(ref)] or [c for c in cands if c.name == ref]
        if len(matches) == 1:
            return matches[0]
        broken = [p for p in damaged if p.candidate.startswith(ref)]
        if not matches and broken:
            raise damage_error(self.candidates_dir / broken[0].candidate, broken[0])
        named = sorted((c for c in cands if str(c.name or "").startswith(ref)), key=lambda c: (str(c.name), c.id)) \
            if not matches else []
        if len(named) == 1:   # the start of one candidate's name
            return named[0]
        if named:
            shown = ", ".join(f"{c.name} ({c.id})" for c in named[:5]) + (", ..." if len(named) > 5 else "")
            raise EnsembleError(f"ambiguous: {ref!r} starts the names of {len(named)} candidates ({shown}); give "
                                "more of a name, or an id")
        if not matches:
            raise EnsembleError(f"no candidate {ref!r} in {self.root} (`ensemble list` shows them)")
        shown = ", ".join(c.id for c in matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise EnsembleError(f"ambiguous: {ref!r} matches {len(matches)} candidates ({shown}); give more of the id")

    def verify(self, refs: list[str] | None = None) -> tuple[list[Candidate], list[Problem]]:
        """Rehash every stored file against its manifest (see :func:`verify_folder`); two
        folders whose manifests have one id are a problem of each."""
        self._existing()
        if refs:
            dirs = [self.find(r)[0].path for r in refs]
        else:
            dirs = sorted(d for d in self.candidates_dir.iterdir() if d.is_dir() or d.is_symlink())
        checked: list[Candidate] = []
        problems: list[Problem] = []
        for d in dirs:
            cand, found = verify_folder(d)
            if cand is not None:
                checked.append(cand)
            problems += found
        return checked, problems + _shared_ids(checked)

    # -- writing ------------------------------------------------------------------------------
    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:10]

    def _stage(self):
        """A fresh staging folder owned by this process while the ``with`` block runs
        (:func:`ensemble.registry.recovery.owned_stage`: removed by recovery as soon as its owner is gone)."""
        self.ensure()
        return owned_stage(self.root / ".staging")

    def add(self, build: Callable[[Path], dict[str, Any]], cid: str | None = None) -> Candidate:
        """Register a new candidate: ``build(folder)`` writes its files and returns the manifest
        fields; the folder is hashed, the manifest written, then renamed into place in one step.
        Any exception leaves the registry as it was."""
        cid = cid or self.new_id()
        with self._stage() as stage:
            fields = build(stage) or {}
            fields.update(id=cid)
            fields.setdefault("created", now_iso())
            manifest = seal_manifest(stage, fields)
            final = self.candidates_dir / cid
            if final.exists():
                raise EnsembleError(f"candidate {cid} already exists in {self.root}")
            fault_point("registry.add.rename")
            os.rename(stage, final)
        return Candidate(final, manifest)

    def update(self, ref: str, build: Callable[[Path, dict[str, Any]], dict[str, Any]]) -> Candidate:
        """Replace a candidate by a modified copy: ``build(folder, manifest)`` edits a hard-linked
        copy of the candidate and returns the new manifest. Swapped in under the lock."""
        cand = self.get(ref)
        check_seal(cand)
        with self._stage() as stage:
            _linked_copy(cand.path, stage)
            fields = build(stage, json.loads(json.dumps(cand.manifest)))
            fields["id"] = cand.id
            manifest = seal_manifest(stage, fields, old=cand)
            with self.lock():
                self._swap(cand.path, stage)
        return Candidate(cand.path, manifest)

    def _swap(self, live: Path, stage: Path) -> None:
        """Replace the live folder by ``stage`` (caller holds the lock)."""
        name = f"{live.name}.{uuid.uuid4().hex[:8]}"
        marker = self.root / ".trash" / f"{name}.restore"
        marker.touch()  # if we die between the two renames, recover() puts the old folder back
        fault_point("registry.swap")
        os.rename(live, self.root / ".trash" / name)
        fault_point("registry.swap.in")
        os.rename(stage, live)
        marker.unlink()
        shutil.rmtree(self.root / ".trash" / name, ignore_errors=True)

    def update_manifest(self, ref: str, edit: Callable[[dict[str, Any]], None]) -> Candidate:
        """Edit manifest fields that describe no file (e.g. training status); atomic replace."""
        with self.lock():
            cand = self.get(ref)
            check_seal(cand)
            manifest = json.loads(json.dumps(cand.manifest))
            edit(manifest)
            write_manifest(cand.path, manifest)
        return Candidate(cand.path, manifest)

    def remove(self, ref: str, allow: Iterable[str] = ()) -> Candidate:
        """Delete a candidate (a damaged folder too, when named exactly: :meth:`find`). Refused,
        naming them, while saved ensembles other than ``allow`` (those the user agreed to break)
        have it as a member: checked under the lock, so a ``select`` saving meanwhile is seen."""
        with self.lock():
            cand, _ = self.find(ref)
            named = [n for n in self.ensembles_naming(cand.id) if n not in set(allow)]
            if named:
                raise EnsembleError(
                    f"candidate {cand.id} is a member of the saved ensemble{'s' if len(named) > 1 else ''} "
                    f"{', '.join(named)}: not removed (`ensemble predict` with "
                    f"{'them' if len(named) > 1 else 'it'} would fail); run `ensemble select` again without it, "
                    "or confirm the removal (`ensemble remove --yes`) to break them")
            trash = self.root / ".trash" / f"{cand.path.name}.{uuid.uuid4().hex[:8]}"
            fault_point("registry.remove")
            os.rename(cand.path, trash)
            fault_point("registry.remove.trash")   # a kill here: recovery empties the trash
        if trash.is_symlink():
            trash.unlink()          # a symlinked folder: the link goes, never what it points to
        else:
            shutil.rmtree(trash, ignore_errors=True)
        return cand
