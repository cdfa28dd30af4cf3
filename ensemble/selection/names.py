"""The selection modes' names and the default, with no numpy: what the command line offers loads
nothing heavy (:mod:`.modes` holds the modes themselves and checks that the names match)."""
from __future__ import annotations

MODE_NAMES = ("greedy", "greedy-strict", "caruana", "bagged")

# The default: the best mean true held-out gain across `ensemble bench honesty`'s scenarios, and no
# worse than greedy on the real candidates of its --registry check (README "Honest gains").
DEFAULT_MODE = "caruana"
