"""The soup recipes' names and the default, with no numpy: what the command line offers loads
nothing heavy (:mod:`.path` holds the recipes themselves)."""
from __future__ import annotations

RECIPES = ("greedy", "uniform")
DEFAULT_RECIPE = "greedy"
