"""Model soups (Wortsman et al., ICML 2022): the weights of candidates fine-tuned from one start,
averaged into one model that costs one model's forward pass, chosen by a recipe on dev and
estimated on held-out rows as selection is.

Files, in flow order:

``recipes``
    the recipes' names and the default (no numpy: what the command line reads).
``groups``
    which model candidates can be averaged (origin, architecture, tasks, parameters), and why
    each one left out is left out.
``path``
    the recipes over arrays (``greedy``, ``uniform``): the members, in order, each step tried.
``honest``
    the soup's held-out gain over the best single candidate: selection's folds and interval.
``average``
    averaging weights (float32 running sum, hashes checked) and scoring the average on dev.
``build``
    ``ensemble soup``: groups, recipes, estimates, then each soup registered atomically.
"""
from .. import lazy_names

FILES = ("recipes", "groups", "path", "honest", "average", "build")
__all__ = ["RECIPES", "make_soups", "plan_soups", "soup_groups"]
__getattr__ = lazy_names(__name__, {"RECIPES": "recipes", "make_soups": "build", "plan_soups": "build",
                                    "soup_groups": "groups"})
