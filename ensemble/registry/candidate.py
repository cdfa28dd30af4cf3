"""One candidate folder of the registry: its manifest, cached predictions and staleness, how a
manifest is sealed (format, sha256 + size of every file) and how a folder is verified against it.

Layout of a candidate (see :mod:`ensemble.registry.store` for the registry around it)::

    candidate.json                  manifest: config, metrics, provenance, sha256 + size of every file
    model/ensemble_model.json       rebuilds the model (architecture, tasks, encoder config)
    model/model.safetensors         weights (never pickle)
    model/tokenizer.json ...        tokenizer files, so the candidate loads offline
    predictions/<task>-<split>.csv  unrounded predictions keyed by id (see ensemble.predfile)

No torch: selection and the leaderboard code read predictions through it.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:   # numpy loads with the predictions (predfile), not with the command line
    import numpy as np

from ..data import decode_utf8, read_raw
from .. import documents
from ..errors import EnsembleError
from ..files import PICKLE_SUFFIXES, atomic_write_text, check_inside, file_sha256
from .manifest import SEAL, ManifestFields, seal_of, seal_problem, shape_problem
from ..predfile import UTF8_CSV, parse_predictions, prediction_file_name
from ..tasks import is_plain_id

FORMAT = "ensemble-candidate/2"   # /2: sealed (ensemble.registry.manifest); /1 manifests, unsealed, are read as before
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
class Candidate(ManifestFields):
    """A candidate folder and its manifest. Code outside the registry's manifest files reads the
    manifest through the fields of :class:`ManifestFields`, never its dict."""
    path: Path
    manifest: dict[str, Any]

    @property
    def id(self) -> str:
        """The folder's name: every path of a candidate is built from it, never from the
        manifest's ``"id"`` (checked equal to it on every read: :func:`try_read`)."""
        return self.path.name

    @property
    def name(self) -> str:
        return self.manifest.get("name", self.id)

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    def predictions(self, task: str, split: str) -> tuple[list[str], np.ndarray]:
        record = self.prediction_record(task, split)
        if record is None:
            raise EnsembleError(f"candidate {self.id} has no {task} {split} predictions")
        path = self.path / record.file
        check_inside(self.path, path, "prediction file")
        raw = read_raw(path, "cached prediction file missing; run `ensemble verify`")
        check_sha256(self, record.file, hashlib.sha256(raw).hexdigest())
        return parse_predictions(path, task, decode_utf8(path, raw, UTF8_CSV))

    def stale(self, data_dir: Path, hashes: dict[str, str] | None = None) -> list[str]:
        """Cached prediction files whose input data file has changed (or vanished)."""
        out = []
        for record in self.prediction_records():
            data_file = record.data_file
            if not data_file:
                continue
            p = Path(data_dir) / data_file
            if hashes is not None and data_file in hashes:
                current = hashes[data_file]
            else:
                current = file_sha256(p) if p.exists() else None
                if hashes is not None:
                    hashes[data_file] = current
            if current != record.data_sha256:
                out.append(f"{record.task}-{record.split} ({data_file} {'missing' if current is None else 'changed'})")
        return out


# -- stored files checked at the point of use -------------------------------------------------
def check_sha256(cand: Candidate, rel: str, actual: str) -> None:
    """Refuse file ``rel`` of ``cand`` whose content hashes to ``actual`` unless its manifest
    records that sha256: an error naming the file, both sha256s and `ensemble verify`."""
    recorded = cand.stored_sha256(rel)
    if actual != recorded:
        raise EnsembleError(f"{cand.path / rel}: sha256 {actual} differs from the {recorded} recorded in the "
                            "candidate's manifest: the file changed after it was stored; refused (run "
                            "`ensemble verify`)")


def check_seal(cand: Candidate) -> None:
    """Refuse to rewrite a manifest that was edited after it was written (its seal no longer
    matches): resealing it would erase the evidence that ``verify`` reports. An unsealed manifest
    (an older version's) is sealed by the rewrite."""
    problem = seal_problem(cand.manifest)   # None for an unsealed older format only: a removed seal is refused
    if problem:
        raise EnsembleError(f"{cand.path / MANIFEST}: {problem}; refused to rewrite it "
                            "(run `ensemble verify`; `ensemble remove` and register again if it was damaged)")


def check_file(cand: Candidate, rel: str) -> None:
    """Check file ``rel`` of ``cand`` on disk against its manifest's sha256 (:func:`check_sha256`)."""
    path = cand.path / rel
    check_inside(cand.path, path, "stored file")
    if not path.is_file():
        raise EnsembleError(f"{path}: missing from candidate {cand.id}; run `ensemble verify`")
    check_sha256(cand, rel, file_sha256(path))


def check_model(cand: Candidate) -> None:
    """Check every stored file of the candidate's model folder before the model is loaded."""
    for rel in sorted(cand.files):
        if rel.startswith("model/"):
            check_file(cand, rel)


# -- manifests and verification ---------------------------------------------------------------
def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """The one writer of ``candidate.json``: sealed (``manifest["seal"]`` set, see
    :mod:`ensemble.registry.manifest`), sorted keys, atomic replace."""
    manifest["format"] = FORMAT
    manifest[SEAL] = seal_of(manifest)
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def seal_manifest(stage: Path, fields: dict[str, Any], old: Candidate | None = None) -> dict[str, Any]:
    """The stored manifest: ``fields`` plus the format and the sha256 + size of every file in
    ``stage``, written into ``stage``. The one place a manifest gets its file list.

    ``old``: the candidate ``stage`` is an updated copy of; a file still hard-linked to its old
    version must hash to its old record (a tampered file is refused, never re-hashed)."""
    files = {}
    for p in sorted(stage.rglob("*")):
        if p.is_symlink():
            raise EnsembleError(f"{p}: symlinks are not stored in the registry")
        if p.is_file() and p.name != MANIFEST:
            rel = p.relative_to(stage).as_posix()
            files[rel] = {"sha256": file_sha256(p), "size": p.stat().st_size}
            if old is not None and _same_file(p, old.path / rel):
                check_sha256(old, rel, files[rel]["sha256"])
    manifest = {**fields, "files": files}
    problem = shape_problem(manifest)   # never store a manifest every reader would refuse
    if problem:
        raise EnsembleError(f"{stage / MANIFEST}: {problem}; not stored")
    write_manifest(stage, manifest)
    return manifest


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file (a hard link kept unchanged by an update)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def is_plain_name(cid: Any) -> bool:
    """Whether ``cid`` can name a candidate folder: a plain id (no comma, quote or whitespace)
    without a path separator or ``..``."""
    return isinstance(cid, str) and is_plain_id(cid) and not any(s in cid for s in ("/", "\\", ".."))


def _identity_problem(d: Path, manifest: Any) -> str | None:
    """Why the manifest read from folder ``d`` does not name it: not an object, an id that is
    not a plain name, or one that differs from the folder's name (None when it does)."""
    if not isinstance(manifest, dict):
        return f"not a JSON object (folder {d.name!r})"
    cid = manifest.get("id")
    if not is_plain_name(cid):
        return f"manifest id {cid!r} is not a plain name (folder {d.name!r})"
    if cid != d.name:
        return f"manifest id {cid!r} differs from its folder name {d.name!r}"
    return None


def _symlink_problem(d: Path) -> str:
    target = d.resolve()
    where = "inside" if target.is_relative_to(d.parent.resolve()) else "out of"
    return f"candidate folder is a symlink to {target} ({where} the registry): refused"


def _read_manifest(d: Path) -> tuple[Any, Problem | None]:
    """Folder ``d``'s parsed manifest, or what keeps it from being read: the folder is a symlink,
    the manifest is missing or not JSON, or its id does not name the folder."""
    m = d / MANIFEST
    if d.is_symlink():
        return None, Problem(d.name, ".", _symlink_problem(d))
    if not m.is_file():
        return None, Problem(d.name, MANIFEST, "missing manifest")
    try:
        manifest = documents.load_json(m, what="a candidate's manifest")
    except EnsembleError as e:   # unreadable, not JSON, too deep
        return None, Problem(d.name, MANIFEST, str(e).removeprefix(f"{m}: "))
    problem = _identity_problem(d, manifest) or shape_problem(manifest)
    return manifest, Problem(d.name, MANIFEST, problem) if problem else None


def try_read(d: Path) -> tuple[Candidate | None, Problem | None]:
    """The candidate in folder ``d``, its identity checked (:func:`_read_manifest`), or None and
    what is wrong with the folder (it is damaged)."""
    manifest, problem = _read_manifest(d)
    if problem:
        return None, problem
    return Candidate(d, manifest), None


def damage_error(d: Path, problem: Problem) -> EnsembleError:
    """The error of reading the damaged candidate folder ``d``: what is wrong and the way out."""
    return EnsembleError(f"{d / problem.file}: {problem.message}; run `ensemble verify` "
                         f"(`ensemble remove {d.name}` deletes the folder)")


def damaged_note(problem: Problem) -> str:
    """What ``list`` and ``select`` say of a damaged candidate folder (left out of both)."""
    return (f"candidate folder {problem.candidate} is damaged ({problem.file}: {problem.message}): left out; "
            f"`ensemble verify` checks it, `ensemble remove {problem.candidate}` deletes it")


def verify_folder(d: Path) -> tuple[Candidate | None, list[Problem]]:
    """Rehash one candidate folder against its manifest: mismatched, missing, extra, symlinked;
    a symlinked folder, or a manifest id that is not the folder's plain name."""
    manifest, problem = _read_manifest(d)
    found = [problem] if problem else []
    if not isinstance(manifest, dict):
        return None, found
    cand = Candidate(d, manifest)
    if shape_problem(manifest):   # named in found; its files cannot be listed
        return cand, found
    sealed = seal_problem(manifest)
    found += [Problem(d.name, MANIFEST, sealed)] if sealed and not found else []   # an id problem says more
    return cand, found + _listed_problems(cand) + _unlisted_problems(cand)


def _listed_problems(cand: Candidate) -> list[Problem]:
    """The manifest's files: each inside the folder, present, of its size and sha256."""
    problems = []
    d = cand.path
    for rel, info in sorted(cand.files.items()):
        p = d / rel
        if not p.resolve().is_relative_to(d.resolve()) or p.is_symlink():
            problems.append(Problem(cand.id, rel, "path or symlink leaves the candidate folder"))
        elif not p.is_file():
            problems.append(Problem(cand.id, rel, "missing"))
        elif p.stat().st_size != info.size:
            problems.append(Problem(cand.id, rel, f"size {p.stat().st_size} bytes, manifest says {info.size}"))
        elif file_sha256(p) != info.sha256:
            problems.append(Problem(cand.id, rel, "sha256 mismatch (content changed)"))
    return problems


def _unlisted_problems(cand: Candidate) -> list[Problem]:
    """What the folder holds beyond its manifest: symlinks, extra files, pickles."""
    problems = []
    listed = cand.files
    for p in sorted(cand.path.rglob("*")):
        rel = p.relative_to(cand.path).as_posix()
        if p.is_symlink():
            if rel not in listed:
                problems.append(Problem(cand.id, rel, "symlink not in the manifest"))
        elif p.is_file() and rel != MANIFEST and rel not in listed:
            problems.append(Problem(cand.id, rel, "extra file not in the manifest"))
        if p.suffix.lower() in PICKLE_SUFFIXES:
            problems.append(Problem(cand.id, rel, "pickle file (refused: convert to safetensors)"))
    return problems


def prediction_entry(task: str, split: str, data_file: Path, data_sha256: str, rows: int) -> dict[str, Any]:
    """A manifest's record of one cached prediction file and the data file it was made from."""
    return {"file": f"predictions/{prediction_file_name(task, split)}", "data_file": Path(data_file).name,
            "data_sha256": data_sha256, "rows": rows}
