"""The checkpoint registry: candidates with their weights and cached, unrounded predictions.

Layout (everything a candidate needs sits in its own folder; nothing is shared between them)::

    <registry>/
      candidates/<id>/
        candidate.json                  manifest: config, metrics, provenance, sha256 + size of every file
        model/ensemble_model.json       rebuilds the model (architecture, tasks, encoder config)
        model/model.safetensors         weights (never pickle)
        model/tokenizer.json ...        tokenizer files, so the candidate loads offline
        predictions/<task>-<split>.csv  unrounded predictions keyed by id (see ensemble.predfile)
      ensembles/<name>.json             selected ensembles: members, weights, prediction hashes
      .staging/                         candidates being written (never read as candidates)
      .trash/                           candidates being replaced or removed
      .lock                             taken while a candidate folder is swapped

Writes are atomic: a candidate is written aside in ``.staging`` and renamed into
``candidates/`` in one step, so readers never see half a candidate, an interrupted write leaves
the registry as it was, and concurrent writers (each with its own fresh id) all land. Updating
a candidate (new predictions) writes a complete new folder (weights hard-linked) and swaps it in
under the lock.

This module does not import torch: the selector and writer read predictions through it.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import EnsembleError
from .files import PICKLE_SUFFIXES, atomic_write_bytes, atomic_write_text, check_inside, file_sha256

FORMAT = "ensemble-candidate/1"
MANIFEST = "candidate.json"


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class Problem:
    candidate: str
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.candidate}: {self.file}: {self.message}"


@dataclass
class Candidate:
    path: Path
    manifest: dict[str, Any]

    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def name(self) -> str:
        return self.manifest.get("name", self.id)

    @property
    def kind(self) -> str:
        return self.manifest.get("kind", "model")

    @property
    def tasks(self) -> list[str]:
        return list(self.manifest.get("tasks", []))

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    def has_predictions(self, task: str, split: str) -> bool:
        return split in self.manifest.get("predictions", {}).get(task, {})

    def dev_metric(self, task: str) -> float | None:
        return self.manifest.get("metrics", {}).get(task, {}).get("dev")

    def predictions(self, task: str, split: str) -> tuple[list[str], np.ndarray]:
        from .predfile import read_predictions

        entry = self.manifest.get("predictions", {}).get(task, {}).get(split)
        if entry is None:
            raise EnsembleError(f"candidate {self.id} has no {task} {split} predictions")
        path = self.path / entry["file"]
        check_inside(self.path, path, "prediction file")
        return read_predictions(path, task)

    def stale(self, data_dir: Path, hashes: dict[str, str] | None = None) -> list[str]:
        """Cached prediction files whose input data file has changed (or vanished)."""
        out = []
        for task, splits in self.manifest.get("predictions", {}).items():
            for split, entry in splits.items():
                data_file = entry.get("data_file")
                if not data_file:
                    continue
                p = Path(data_dir) / data_file
                if hashes is not None and data_file in hashes:
                    current = hashes[data_file]
                else:
                    current = file_sha256(p) if p.exists() else None
                    if hashes is not None:
                        hashes[data_file] = current
                if current != entry.get("data_sha256"):
                    out.append(f"{task}-{split} ({data_file} {'missing' if current is None else 'changed'})")
        return out


class Registry:
    def __init__(self, root: Path | str, create: bool = True):
        self.root = Path(root)
        if not self.root.exists():
            if not create:
                raise EnsembleError(f"registry {self.root} does not exist")
        if create:
            for d in ("candidates", "ensembles", ".staging", ".trash"):
                (self.root / d).mkdir(parents=True, exist_ok=True)
        self._recover()

    # -- layout -------------------------------------------------------------------------------
    @property
    def candidates_dir(self) -> Path:
        return self.root / "candidates"

    @property
    def ensembles_dir(self) -> Path:
        return self.root / "ensembles"

    @contextmanager
    def lock(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _recover(self) -> None:
        """Undo swaps that a crash interrupted, and clear leftovers.

        ``_swap`` writes a marker ``.trash/<name>.restore`` before moving the live folder to
        ``.trash/<name>``: a marker whose candidate has no live folder means the swap died between
        its two renames, so the old folder is put back. Marker-less trash (a finished swap or
        removal whose delete was cut short) and staging folders older than a day are deleted.
        """
        trash = self.root / ".trash"
        if not trash.exists():
            return
        markers = list(trash.glob("*.restore"))
        leftovers = [t for t in trash.iterdir() if t.is_dir() and not (trash / f"{t.name}.restore").exists()]
        if markers or leftovers:
            # a writer may be inside _swap right now (between its two renames): wait for its lock
            with self.lock():
                for m in trash.glob("*.restore"):
                    folder = trash / m.name[: -len(".restore")]
                    live = self.candidates_dir / folder.name.split(".", 1)[0]
                    if folder.is_dir() and not live.exists() and (folder / MANIFEST).exists():
                        os.rename(folder, live)
                    m.unlink()
                for t in trash.iterdir():
                    if t.is_dir():
                        shutil.rmtree(t, ignore_errors=True)
        staging = self.root / ".staging"
        for s in staging.iterdir() if staging.exists() else []:
            if time.time() - s.stat().st_mtime > 86400:
                shutil.rmtree(s, ignore_errors=True)

    # -- reading ------------------------------------------------------------------------------
    def candidates(self) -> list[Candidate]:
        out = []
        if not self.candidates_dir.exists():
            return out
        for d in sorted(self.candidates_dir.iterdir()):
            m = d / MANIFEST
            if not m.is_file():
                continue
            try:
                manifest = json.loads(m.read_text())
            except ValueError as e:
                raise EnsembleError(f"{m}: not valid JSON ({e}); run `ensemble verify`") from e
            out.append(Candidate(d, manifest))
        out.sort(key=lambda c: (c.manifest.get("created", ""), c.id))
        return out

    def get(self, ref: str) -> Candidate:
        """A candidate by id, unique id prefix, or unique name."""
        cands = self.candidates()
        exact = [c for c in cands if c.id == ref]
        if exact:
            return exact[0]
        matches = [c for c in cands if c.id.startswith(ref)] or [c for c in cands if c.name == ref]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise EnsembleError(f"no candidate {ref!r} in {self.root} (`ensemble list` shows them)")
        raise EnsembleError(f"{ref!r} matches {len(matches)} candidates ({', '.join(c.id for c in matches[:5])}); give more of the id")

    # -- writing ------------------------------------------------------------------------------
    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:10]

    def _stage(self) -> Path:
        d = self.root / ".staging" / uuid.uuid4().hex
        d.mkdir(parents=True)
        return d

    def _finish_manifest(self, stage: Path, manifest: dict[str, Any]) -> dict[str, Any]:
        files = {}
        for p in sorted(stage.rglob("*")):
            if p.is_symlink():
                raise EnsembleError(f"{p}: symlinks are not stored in the registry")
            if p.is_file() and p.name != MANIFEST:
                rel = p.relative_to(stage).as_posix()
                files[rel] = {"sha256": file_sha256(p), "size": p.stat().st_size}
        manifest = dict(manifest)
        manifest["format"] = FORMAT
        manifest["files"] = files
        with open(stage / MANIFEST, "w") as f:
            f.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return manifest

    def add(self, build: Callable[[Path], dict[str, Any]], cid: str | None = None) -> Candidate:
        """Register a new candidate: ``build(folder)`` writes its files and returns the manifest
        fields; the folder is hashed, the manifest written, then renamed into place in one step.
        Any exception leaves the registry as it was."""
        cid = cid or self.new_id()
        stage = self._stage()
        try:
            manifest = build(stage) or {}
            manifest.update(id=cid)
            manifest.setdefault("created", now_iso())
            manifest = self._finish_manifest(stage, manifest)
            final = self.candidates_dir / cid
            if final.exists():
                raise EnsembleError(f"candidate {cid} already exists in {self.root}")
            os.rename(stage, final)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        return Candidate(final, manifest)

    def update(self, ref: str, build: Callable[[Path, dict[str, Any]], dict[str, Any]]) -> Candidate:
        """Replace a candidate by a modified copy: ``build(folder, manifest)`` edits a hard-linked
        copy of the candidate and returns the new manifest. Swapped in under the lock."""
        cand = self.get(ref)
        stage = self._stage()
        try:
            for p in sorted(cand.path.rglob("*")):
                rel = p.relative_to(cand.path)
                if p.is_dir():
                    (stage / rel).mkdir(parents=True, exist_ok=True)
                elif p.name != MANIFEST:
                    (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                    os.link(p, stage / rel)  # files are never modified in place, so links are safe
            manifest = build(stage, json.loads(json.dumps(cand.manifest)))
            manifest["id"] = cand.id
            manifest = self._finish_manifest(stage, manifest)
            with self.lock():
                self._swap(cand.id, stage)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        return Candidate(self.candidates_dir / cand.id, manifest)

    def _swap(self, cid: str, stage: Path) -> None:
        """Replace the live folder by ``stage`` (caller holds the lock)."""
        live = self.candidates_dir / cid
        name = f"{cid}.{uuid.uuid4().hex[:8]}"
        marker = self.root / ".trash" / f"{name}.restore"
        marker.touch()  # if we die between the two renames, _recover puts the old folder back
        os.rename(live, self.root / ".trash" / name)
        os.rename(stage, live)
        marker.unlink()
        shutil.rmtree(self.root / ".trash" / name, ignore_errors=True)

    def update_manifest(self, ref: str, edit: Callable[[dict[str, Any]], None]) -> Candidate:
        """Edit manifest fields that describe no file (e.g. training status); atomic replace."""
        with self.lock():
            cand = self.get(ref)
            manifest = json.loads(json.dumps(cand.manifest))
            edit(manifest)
            atomic_write_text(cand.path / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return Candidate(cand.path, manifest)

    def remove(self, ref: str) -> Candidate:
        with self.lock():
            cand = self.get(ref)
            trash = self.root / ".trash" / f"{cand.id}.{uuid.uuid4().hex[:8]}"
            os.rename(cand.path, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return cand

    # -- trust --------------------------------------------------------------------------------
    def verify(self, refs: list[str] | None = None) -> tuple[list[Candidate], list[Problem]]:
        """Rehash every stored file against its manifest: mismatched, missing, extra, symlinked."""
        problems: list[Problem] = []
        checked: list[Candidate] = []
        dirs = [self.get(r).path for r in refs] if refs else (
            sorted(d for d in self.candidates_dir.iterdir() if d.is_dir()) if self.candidates_dir.exists() else [])
        for d in dirs:
            m = d / MANIFEST
            if not m.is_file():
                problems.append(Problem(d.name, MANIFEST, "missing manifest"))
                continue
            try:
                manifest = json.loads(m.read_text())
            except ValueError as e:
                problems.append(Problem(d.name, MANIFEST, f"not valid JSON ({e})"))
                continue
            cand = Candidate(d, manifest)
            checked.append(cand)
            listed = manifest.get("files", {})
            for rel, info in sorted(listed.items()):
                p = d / rel
                if not p.resolve().is_relative_to(d.resolve()) or p.is_symlink():
                    problems.append(Problem(cand.id, rel, "path or symlink leaves the candidate folder"))
                    continue
                if not p.is_file():
                    problems.append(Problem(cand.id, rel, "missing"))
                    continue
                size = p.stat().st_size
                if size != info.get("size"):
                    problems.append(Problem(cand.id, rel, f"size {size} bytes, manifest says {info.get('size')}"))
                    continue
                if file_sha256(p) != info.get("sha256"):
                    problems.append(Problem(cand.id, rel, "sha256 mismatch (content changed)"))
            for p in sorted(d.rglob("*")):
                rel = p.relative_to(d).as_posix()
                if p.is_symlink():
                    if rel not in listed:
                        problems.append(Problem(cand.id, rel, "symlink not in the manifest"))
                elif p.is_file() and rel != MANIFEST and rel not in listed:
                    problems.append(Problem(cand.id, rel, "extra file not in the manifest"))
                if p.suffix.lower() in PICKLE_SUFFIXES:
                    problems.append(Problem(cand.id, rel, "pickle file (refused: convert to safetensors)"))
        return checked, problems

    # -- ensembles ----------------------------------------------------------------------------
    def save_ensemble(self, name: str, doc: dict[str, Any]) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise EnsembleError(f"ensemble name {name!r}: expected a plain file name")
        self.ensembles_dir.mkdir(parents=True, exist_ok=True)
        path = self.ensembles_dir / f"{name}.json"
        atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
        return path

    def load_ensemble(self, name: str | None = None) -> dict[str, Any]:
        if name is None:
            docs = sorted(self.ensembles_dir.glob("*.json"), key=lambda p: p.stat().st_mtime)
            if not docs:
                raise EnsembleError(f"no selected ensemble in {self.ensembles_dir}; run `ensemble select` first")
            path = docs[-1]
        else:
            path = self.ensembles_dir / f"{name}.json"
            if not path.exists():
                have = ", ".join(p.stem for p in sorted(self.ensembles_dir.glob("*.json"))) or "none"
                raise EnsembleError(f"no ensemble {name!r} in {self.ensembles_dir} (have: {have})")
        try:
            return json.loads(path.read_text())
        except ValueError as e:
            raise EnsembleError(f"{path}: not valid JSON ({e})") from e


def prediction_entry(task: str, split: str, data_file: Path, data_sha256: str, rows: int) -> dict[str, Any]:
    return {"file": f"predictions/{task}-{split}.csv", "data_file": Path(data_file).name,
            "data_sha256": data_sha256, "rows": rows}
