"""Which model candidates can be averaged: the groups of candidates that share the encoder's
origin (the base and its provenance, the tokenizer), the architecture, the tasks and every
parameter's name, shape and dtype (read from the safetensors header, no torch). Every candidate
left out gets its reason in words.
"""
from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EnsembleError
from ..files import check_safetensors
from ..registry.candidate import Candidate

WEIGHTS = "model/model.safetensors"
MODEL_CONFIG = "model/ensemble_model.json"
TOKENIZER_FILES = ("model/tokenizer.json", "model/vocab.txt")


@dataclass
class Group:
    """Candidates whose weights can be averaged, best id first (``members`` sorted by id)."""
    key: str
    architecture: str
    tasks: list[str]
    base: str
    members: list[Candidate] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.members]

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "architecture": self.architecture, "tasks": self.tasks, "base": self.base,
                "members": self.ids}


@dataclass
class LeftOut:
    id: str
    name: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "reason": self.reason}


def weight_signature(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every tensor's name -> (dtype, shape) from a safetensors file's header (checked first)."""
    check_safetensors(path)
    with open(path, "rb") as fp:
        (n,) = struct.unpack("<Q", fp.read(8))
        header = json.loads(fp.read(n))
    return {k: (v["dtype"], tuple(v["shape"])) for k, v in header.items() if k != "__metadata__"}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def soup_parts(cand: Candidate) -> dict[str, Any]:
    """The four things that must agree, in the order a reason names them (``EnsembleError`` when
    the candidate's model folder cannot be read)."""
    try:
        config = json.loads((cand.path / MODEL_CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise EnsembleError(f"{cand.path / MODEL_CONFIG}: cannot be read ({e})") from e
    tokenizer = [cand.stored_sha256(f) for f in TOKENIZER_FILES]
    provenance = cand.base_provenance
    return {
        "origin": _digest([config.get("base"), provenance, config.get("encoder"), tokenizer,
                           config.get("max_length")]),
        "architecture": _digest([config.get("architecture"), config.get("task_layers")]),
        "tasks": _digest(sorted(config.get("tasks", []))),
        "parameters": _digest(sorted(weight_signature(cand.path / WEIGHTS).items())),
        "_config": config,
    }


WORDS = {"origin": "another encoder origin (base, its provenance, tokenizer or max length)",
         "architecture": "another architecture", "tasks": "other tasks",
         "parameters": "other parameter names, shapes or dtypes"}


def _why_not(parts: dict[str, Any], other: dict[str, Any], other_ids: list[str]) -> str:
    for k, words in WORDS.items():
        if parts[k] != other[k]:
            return f"{words} than group {', '.join(other_ids)}"
    return "fits no group"   # pragma: no cover - equal parts share a group


def soup_groups(cands: list[Candidate]) -> tuple[list[Group], list[LeftOut]]:
    """Groups of two or more candidates that can be averaged (largest first) and every candidate
    left out, with its reason."""
    left: list[LeftOut] = []
    by_key: dict[str, list[tuple[Candidate, dict]]] = {}
    for c in sorted(cands, key=lambda c: c.id):
        if c.kind != "model":
            left.append(LeftOut(c.id, c.name, "imported predictions: no weights to average"))
            continue
        if c.soup:
            left.append(LeftOut(c.id, c.name, "a soup already (its members are souped instead)"))
            continue
        try:
            parts = soup_parts(c)
        except EnsembleError as e:
            left.append(LeftOut(c.id, c.name, f"its model folder cannot be read: {e}"))
            continue
        key = _digest([parts[k] for k in WORDS])
        by_key.setdefault(key, []).append((c, parts))
    ordered = sorted(by_key.items(), key=lambda kv: (-len(kv[1]), kv[1][0][0].id))
    groups = []
    for key, rows in ordered:
        if len(rows) < 2:
            continue
        cfg = rows[0][1]["_config"]
        groups.append(Group(key, rows[0][0].architecture or cfg.get("architecture", "?"),
                            list(cfg.get("tasks", [])), str(cfg.get("base", "")), [c for c, _ in rows]))
    for key, rows in ordered:
        if len(rows) >= 2:
            continue
        c, parts = rows[0]
        if ordered[0][0] == key:
            left.append(LeftOut(c.id, c.name, "no other candidate shares its origin, architecture, tasks and parameters"))
        else:
            big = ordered[0][1]
            left.append(LeftOut(c.id, c.name, _why_not(parts, big[0][1], [x.id for x, _ in big])))
    return groups, sorted(left, key=lambda x: x.id)
