"""Search: spend a training budget where the dev score rises (``ensemble search``), with Optuna's
samplers, pruners and study storage; each trial one training run into the registry.

Files, in flow order:

``space``
    search-space files (TOML in the grid file's style) and the shipped ``paper`` and ``quick`` spaces (no torch, no optuna).
``study``
    the study's storage (SQLite in the registry, or a database server), samplers and pruners by name, and the
    check that the registry and the study agree (``verify``).
``trials``
    the search on this machine: trials through ``train_into``, epochs reported to the pruner, a killed search resumed.
``distributed``
    ``--engine ray``: Optuna's ask-and-tell driving the Ray engine of ``run`` (shipping, retries, landing).
"""
from .. import lazy_names

FILES = ("space", "study", "trials", "distributed")
__all__ = ["Space", "load_space", "SearchOptions", "run_search", "check_searches"]
__getattr__ = lazy_names(__name__, {"Space": "space", "load_space": "space", "SearchOptions": "trials",
                                    "run_search": "trials", "check_searches": "study"})
