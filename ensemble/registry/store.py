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
    MANIFEST, Candidate, Problem, check_seal, damage_error, is_plain_name, now_iso, seal_manifest, try_read, verify_folder,
    write_manifest,
)
from .saved import check_ensemble_name, read_ensemble_file
from ..errors import EnsembleError
from ..files import atomic_write_text, fault_point
from .recovery import folder_lock, owned_stage, recover


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


# -- the registry folder and its selected ensembles ---------------------------------------------
def _names_member(path: Path, cid: str) -> bool:
    """Whether the saved ensemble at ``path`` has ``cid`` among some task's members (a damaged
    document names nobody: ``load_ensemble`` reports it when it is used)."""
    try:
        doc = json.loads(path.read_text())
    except ValueError:
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


def _shared_ids(checked: list[Candidate]) -> list[Problem]:
    """A problem for each folder whose manifest's id is also another folder's manifest's id."""
    folders: dict[Any, list[str]] = {}
    for c in checked:
        folders.setdefault(json.dumps(c.recorded_id), []).append(c.path.name)
    return [Problem(name, MANIFEST, f"manifest id {json.loads(key)!r} is also the id in folder(s) "
                    f"{', '.join(repr(n) for n in names if n != name)}")
            for key, names in folders.items() if len(names) > 1 for name in names]


class _Folder:
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

    def _existing(self) -> None:
        """Readers: an error naming the path where there is no registry (a typo never makes one)."""
        if not self.exists:
            raise EnsembleError(f"{self.root}: no registry here (expected a folder made by `ensemble train` "
                                "or `ensemble register`)")

    def ensure(self) -> None:
        """Writers: the registry's folders, made on the first write."""
        for d in ("candidates", "ensembles", ".staging", ".trash"):
            (self.root / d).mkdir(parents=True, exist_ok=True)


class _EnsembleFiles(_Folder):
    """The ``ensembles/`` folder of a registry: one JSON document per selected ensemble."""

    @property
    def ensembles_dir(self) -> Path:
        return self.root / "ensembles"

    def save_ensemble(self, name: str, doc: dict[str, Any]) -> Path:
        check_ensemble_name(name)
        self.ensure()
        path = self.ensembles_dir / f"{name}.json"
        with folder_lock(self.root):   # a `remove` cannot take a member away between the check and the write
            problems = _member_problems(self.candidates_dir, doc)
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
        self._existing()
        return [p.stem for p in sorted(self.ensembles_dir.glob("*.json"), key=lambda p: p.stat().st_mtime)]

    def ensembles_naming(self, cid: str) -> list[str]:
        """The saved ensembles that have candidate ``cid`` as a member of some task (read only)."""
        self._existing()
        return [p.stem for p in sorted(self.ensembles_dir.glob("*.json")) if _names_member(p, cid)]

    def _ensemble_path(self, name: str | None) -> Path:
        self._existing()
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


# -- the registry -------------------------------------------------------------------------------
class Registry(_EnsembleFiles):
    """The registry folder: reading, adding, swapping and removing candidates (the selected
    ensembles: :class:`_EnsembleFiles`). Storage only: what goes into a candidate is
    :mod:`ensemble.registry.register`'s business."""

    def __init__(self, root: Path | str):
        """Nothing is created here: writers make the folders on their first write (:meth:`ensure`),
        readers of a folder that holds no registry get an error (:meth:`_existing`)."""
        super().__init__(root)
        recover(self.root)

    def lock(self):
        self._existing()   # a lock is for changing candidates that exist: no registry made by it
        return folder_lock(self.root)

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
