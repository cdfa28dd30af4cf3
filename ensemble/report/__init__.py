"""The report: what a selected ensemble does, in numbers, in figures and on one page (no torch).

Files, in flow order:

``analysis``
    numbers: confusion, calibration, the rows the ensemble fixes and breaks, diversity.
``figures``
    matplotlib figures (Agg backend): selection curves, learning curves, hyperparameters.
``page``
    ``ensemble report``: one self-contained HTML page of the figures and tables.
"""
from .. import lazy_names

FILES = ("analysis", "figures", "page")
__all__ = ["analyze", "report"]
__getattr__ = lazy_names(__name__, {"analyze": "analysis", "report": "page"})
