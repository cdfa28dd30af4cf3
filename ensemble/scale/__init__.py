"""Scale: grids of training runs, one after another here or in parallel on Ray.

Files, in flow order:

``grid``
    grid files (TOML) and the ``quick`` and ``paper`` presets: what ``ensemble run`` trains (no torch).
``worker``
    the worker side of ``--engine ray``: one run as one Ray task, files shipped both ways.
``driver``
    the driver side: a grid's runs as Ray tasks, retries, progress, every result landed in one registry.
"""
from .. import lazy_names

FILES = ("grid", "worker", "driver")
__all__ = ["Grid", "load_grid", "load_preset", "RayOptions", "train_grid"]
__getattr__ = lazy_names(__name__, {"Grid": "grid", "load_grid": "grid", "load_preset": "grid",
                                    "RayOptions": "driver", "train_grid": "driver"})
