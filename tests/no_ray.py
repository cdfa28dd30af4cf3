"""Ray hidden, as on an install without the ``ray`` extra. As a pytest plugin:
``python -m pytest -p no_ray tests/scale tests/cli/test_run.py`` (``tests`` is on pytest's
``pythonpath``): importing ``ray`` or any ``ray.*`` module raises ModuleNotFoundError, as when it is
not installed, so the Ray tests skip and ``--engine ray`` says that Ray is missing. Importing this
module changes nothing; :func:`pytest_configure` (the plugin) hides Ray for the whole session."""
from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder


class HideRay(MetaPathFinder):
    """A finder, first on ``sys.meta_path``, that finds no ``ray``."""

    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the no_ray plugin)", name=name)
        return None


def ray_modules() -> list[str]:
    return [m for m in sys.modules if m == "ray" or m.startswith("ray.")]


def pytest_configure(config) -> None:
    for name in ray_modules():
        del sys.modules[name]
    sys.meta_path.insert(0, HideRay())
