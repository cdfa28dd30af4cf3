"""The selection modes' names and the default, with no numpy: what the command line offers loads
nothing heavy (:mod:`.modes` holds the modes themselves and checks that the names match)."""
from __future__ import annotations

MODE_NAMES = ("greedy", "greedy-strict", "caruana", "bagged")   # the fixed modes

# `select`'s default: per task, the system (the best single candidate or one of the modes) with the
# best cross-fitted held-out estimate, its own estimate nested (selection/choice.py; the guide
# docs/guides/choosing-a-system.md gives the simulation behind it).
AUTO = "auto"
DEFAULT_MODE = AUTO
SELECT_MODES = (AUTO, *MODE_NAMES)   # what `select --mode` takes
# One fixed mode where one is needed without a choice (EnsembleSelector, cross_fit).
FIXED_DEFAULT = "caruana"
