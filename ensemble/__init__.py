"""ensemble: train BERT-family candidates, keep them in a checkpoint registry with cached unrounded
predictions, build per-task ensembles with an honest held-out estimate, write leaderboard files.

The package follows the data, top to bottom; a room imports only rooms above it
(``tests/test_architecture.py`` reads every import, lazy ones too, and enforces it):

====================  ============================================================================
foundation            ``errors``, ``tasks``, ``files``, ``documents``, ``progress``, ``data``,
                      ``predfile``, ``metrics``: errors, the three tasks, safe files, the typed
                      models of every JSON document read, progress events, the course files,
                      prediction files, the metrics
``modeling/``         encoders, token batches, the multitask model, inference
``training/``         fine-tuning and further pretraining, their configuration and checkpoints
``registry/``         candidates with their weights and cached predictions, runs, saved ensembles
``selection/``        per-task ensemble selection over arrays, with the held-out estimate
``soup/``             weights averaged into one model (model soups), with the held-out estimate
``leaderboard/``      the six leaderboard files, their check, the submission zip
``workflow``          conductor: select, predict, the saved ensemble
``scale/``            grids of runs, here or on Ray
``runner``            conductor: ``ensemble run`` from data to a submission
``search/``           ``ensemble search``: Optuna trials, each a training run into the registry
``report/``           what an ensemble does, in numbers, figures and one page
``bench/``            measurements (apart from the core: nothing imports it but the CLI)
``cli/``              the one typer command line (the only room with typer and rich)
====================  ============================================================================

The Python API, loaded on first use: :func:`log_candidate` (any training loop's outputs into the
registry, no torch needed) and :func:`log_course_model` (the course's ``MultitaskBERT`` run over dev
and test and logged in one call).

Every wing's ``__init__`` names its files in flow order (``FILES``) and its public names, loaded
on first use so that importing a wing never loads torch.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

# the rooms in flow order: a room imports only rooms before it
FLOW = ("errors", "tasks", "files", "documents", "progress", "data", "predfile", "metrics", "modeling", "training",
        "registry", "selection", "soup", "leaderboard", "workflow", "scale", "runner", "search", "report", "bench", "cli",
        "__main__")


def lazy_names(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) that imports ``package.<names[attr]>`` on first use, so a
    wing can state its public names without importing its torch files."""
    def __getattr__(attr: str) -> Any:
        if attr not in names:
            raise AttributeError(f"module {package!r} has no attribute {attr!r}")
        return getattr(importlib.import_module(f"{package}.{names[attr]}"), attr)
    return __getattr__


# the Python API for any training loop (torch-free; the adapter imports torch only when it runs)
__all__ = ["log_candidate", "log_course_model"]
__getattr__ = lazy_names(__name__, {"log_candidate": "registry.logged", "log_course_model": "registry.adapter"})
