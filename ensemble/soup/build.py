"""``ensemble soup``: the registry's model candidates grouped, souped by a recipe per task (and
optionally one multitask soup), each soup's held-out gain estimated, the soups registered.

Everything is computed before anything is stored: bad input (no group, an unknown recipe, a task
no member has, a damaged member) leaves the registry as it was. Each soup goes in through the
registry's one atomic path (:meth:`ensemble.registry.store.Registry.add` with
:func:`ensemble.registry.register.predict_into` and :func:`~ensemble.registry.register.model_manifest`):
its own weights (safetensors), unrounded dev and test predictions, and a manifest whose ``soup``
field records the recipe, the members and their weights and each step tried.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import EnsembleError
from ..progress import NULL, Progress
from ..registry.candidate import Candidate
from ..files import file_sha256
from ..registry.register import already_registered, model_manifest, predict_into
from ..registry.store import Registry
from ..tasks import TASK_NAMES
from .groups import Group, LeftOut, soup_groups
from .honest import SoupHeldout, soup_cross_fit
from .path import DEFAULT_RECIPE, SoupPath, best_first, check_recipe, objective, soup_path

if TYPE_CHECKING:
    from .average import Souper


@dataclass
class Soup:
    """One soup: its group, tasks, path, held-out estimate, and once stored, its candidate id."""
    group: Group
    tasks: list[str]
    path: SoupPath
    best_single: str
    best_single_score: float
    heldout: SoupHeldout | None = None
    candidate: str | None = None
    parameters: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group.key, "tasks": self.tasks, "recipe": self.path.recipe,
                "members": self.path.members, "dev": self.path.score, "best_single": self.best_single,
                "best_single_dev": self.best_single_score, "steps": [s.__dict__ for s in self.path.steps],
                "heldout": self.heldout.to_dict() if self.heldout else None, "candidate": self.candidate,
                "parameters": self.parameters}


@dataclass
class SoupReport:
    recipe: str
    groups: list[Group]
    left_out: list[LeftOut]
    soups: list[Soup] = field(default_factory=list)
    forward_passes: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "groups": [g.to_dict() for g in self.groups],
                "left_out": [x.to_dict() for x in self.left_out], "soups": [s.to_dict() for s in self.soups],
                "forward_passes": self.forward_passes, "seconds": self.seconds, "notes": self.notes}


def find_groups(cands: list[Candidate]) -> tuple[list[Group], list[LeftOut]]:
    """The groups, or an error naming why no candidate can be souped."""
    groups, left = soup_groups(cands)
    if not groups:
        why = "; ".join(f"{x.id} ({x.name}): {x.reason}" for x in left) or "the registry holds no candidate"
        raise EnsembleError(f"no candidate can be souped: a soup needs two model candidates of one base, "
                            f"architecture, tasks and parameter shapes ({why})")
    return groups, left


def check_tasks(groups: list[Group], tasks: Sequence[str] | None) -> None:
    have = {t for g in groups for t in g.tasks}
    missing = [t for t in (tasks or []) if t not in have]
    if missing:
        raise EnsembleError(f"--tasks: no member of any soupable group has task {', '.join(missing)} "
                            f"(the groups' tasks: {', '.join(sorted(have, key=list(TASK_NAMES).index))})")


def _soup(souper: Souper, group: Group, tasks: list[str], recipe: str, honest: dict | None) -> Soup:
    path = soup_path(recipe, tasks, souper.singles, souper.soup_of, souper.labels)
    best = best_first(tasks, souper.singles, souper.labels)[0]
    soup = Soup(group, tasks, path, best, objective(tasks, souper.singles[best], souper.labels),
                parameters=souper.model.num_parameters())
    if honest is not None and len(tasks) == 1:
        t = tasks[0]
        soup.heldout = soup_cross_fit(t, souper.ids[t], souper.labels[t], souper.singles, souper.soup_of,
                                      recipe=recipe, **honest)
    return soup


def plan_soups(registry: Registry, data_dir: Path, recipe: str = DEFAULT_RECIPE, tasks: Sequence[str] | None = None,
               multitask: bool = False, device=None, precision: str = "fp32", honest: dict | None = None,
               progress: Progress = NULL) -> tuple[SoupReport, dict[int, Souper]]:
    """Every soup and its estimate, nothing stored (``honest``: folds, repeats, seed, level; None: skip)."""
    from .average import Souper   # lazy: torch

    check_recipe(recipe)
    groups, left = find_groups(registry.candidates())
    check_tasks(groups, tasks)
    report = SoupReport(recipe, groups, left)
    soupers: dict[int, Souper] = {}
    t0 = time.perf_counter()
    for gi, g in enumerate(groups):
        want = [t for t in g.tasks if tasks is None or t in tasks]
        if not want:
            continue
        souper = soupers[gi] = Souper(g.members, want, data_dir, device, precision, progress)
        for t in want:
            report.soups.append(_soup(souper, g, [t], recipe, honest))
        if multitask and len(want) > 1:
            report.soups.append(_soup(souper, g, want, recipe, None))
            report.notes.append(f"multitask soup of group {', '.join(g.ids)}: chosen on the mean dev score of "
                                f"{', '.join(want)}; its held-out gain is estimated per task only for per-task soups")
        report.forward_passes += souper.forward_passes
    report.seconds = time.perf_counter() - t0
    return report, soupers


def _register(registry: Registry, souper: Souper, soup: Soup, name: str, progress: Progress) -> Candidate:
    from ..modeling.model import MultitaskModel, save_model   # lazy: torch
    from .average import average_state

    cfg = type(souper.model.config).from_dict({**souper.model.config.to_dict(), "tasks": soup.tasks})
    model = MultitaskModel.from_config(cfg).to(souper.device).eval()   # the soup's tasks only: their heads
    model.load_state_dict(average_state([souper.members[m] for m in soup.path.members], model.state_dict()))
    soup.parameters = model.num_parameters()
    weights = {m: 1.0 / len(soup.path.members) for m in soup.path.members}
    splits = {k: v for k, v in souper.splits.items() if k[0] in soup.tasks}
    known = {(t, "dev"): (souper.ids[t], souper.soup_of(soup.path.members)[t]) for t in soup.tasks}

    def build(stage: Path) -> dict[str, Any]:
        save_model(model, souper.tokenizer, stage / "model")
        same = already_registered(registry, {"model/model.safetensors": file_sha256(stage / "model/model.safetensors")})
        if same is not None:
            raise _Same(same)
        preds, metrics = predict_into(stage, model, souper.tokenizer, soup.tasks, splits, souper.device,
                                      souper.precision, souper.cache, known=known, progress=progress)
        record = {"recipe": soup.path.recipe, "tasks": soup.tasks, "members": soup.path.members,
                  "weights": weights, "group": soup.group.ids,
                  "steps": [s.__dict__ for s in soup.path.steps], "dev": soup.path.score,
                  "best_single": soup.best_single, "best_single_dev": soup.best_single_score,
                  "heldout": soup.heldout.to_dict() if soup.heldout else None}
        return model_manifest(name, cfg, model.num_parameters(), None, souper.precision, preds, metrics,
                              soup=record, source={"souped_from": soup.path.members})

    try:
        return registry.add(build)
    except _Same as same:   # the same soup made before (same members, same bytes): kept, not added twice
        return same.candidate


class _Same(Exception):
    def __init__(self, candidate: Candidate):
        super().__init__(candidate.id)
        self.candidate = candidate


def make_soups(registry: Registry, data_dir: Path, recipe: str = DEFAULT_RECIPE, tasks: Sequence[str] | None = None,
               multitask: bool = False, name: str | None = None, device=None, precision: str = "fp32",
               honest: dict | None = None, save: bool = True, progress: Progress = NULL) -> SoupReport:
    """Plan every soup (:func:`plan_soups`), then register each (``save``)."""
    report, soupers = plan_soups(registry, Path(data_dir), recipe, tasks, multitask, device, precision, honest, progress)
    if not save:
        return report
    for soup in report.soups:
        if len(soup.path.members) == 1:   # the soup is its best single candidate itself: nothing to add
            soup.candidate = soup.path.members[0]
            report.notes.append(f"{','.join(soup.tasks)}: the {recipe} soup is one candidate, {soup.candidate} "
                                "itself (no other member kept its dev score); nothing added")
            continue
        souper = soupers[report.groups.index(soup.group)]
        label = "multitask" if len(soup.tasks) > 1 else soup.tasks[0]
        before = {c.id for c in registry.candidates()} if registry.exists else set()
        cand = _register(registry, souper, soup, f"{name or 'soup-' + recipe}-{label}", progress)
        soup.candidate = cand.id
        if cand.id in before:
            report.notes.append(f"{label}: the same soup (same weights) is already candidate {cand.id} "
                                f"({cand.name}); not added twice")
    return report
