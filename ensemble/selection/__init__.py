"""Per-task ensemble selection over cached, unrounded dev predictions (numpy/scipy only).

This package sees arrays and ids, never models: no torch, typer, rich or pandas here. Its files,
in the order they import each other: ``checks`` (options, seeds, labels, arrays), ``keys`` (how
scores compare), ``results`` (what is reported), ``average`` (the one weighted average),
``accuracy``, ``workset`` and ``pearson`` (the scorer's pieces), ``pool`` (the scorer),
``greedy`` and ``caruana`` (the modes), ``modes`` (mode name -> mode), ``estimator``
(EnsembleSelector), ``interval``, ``crossfit``, ``inputs`` (TaskInput -> pool) and ``task``
(``select``).

Conventions
-----------
Per task, a candidate's unrounded predictions are a float array of shape ``(n, k)``: ``sst`` class
probabilities (k=5), ``para`` the paraphrase probability (k=1), ``sts`` the raw score (k=1).
An ensemble with integer weights ``w_i`` predicts ``sum_i w_i * p_i / sum_i w_i`` (float64), which
:func:`ensemble_predictions` computes; the metric is :func:`ensemble.metrics.score` on it.

Two modes (:data:`MODES`; a new mode is one new file plus one entry there):

``greedy`` (default, the SerBERTus report's method)
    Candidates are ranked best-first by their own dev score; ties by secondary loss
    (:func:`ensemble.metrics.secondary_loss`, lower first), then by candidate id (ascending
    string order). The first is the ensemble; each next candidate joins (weight 1) only if the
    equal-weight average with it scores ``>=`` the current ensemble. ``max_size`` bounds the number
    of members; once reached, the rest are recorded as "max size reached".

``caruana`` (Caruana et al. 2004)
    Forward selection *with replacement* for ``steps`` steps over all candidates: each step adds
    the candidate whose addition maximises the dev score of the weighted average (ties: lower
    secondary loss of the resulting ensemble, then candidate id). The shortest prefix of the
    steps that reaches the best dev score is kept; weights are the counts. ``max_size`` bounds the
    number of *distinct* members: once that many are in, only current members can be added again
    (so the total weight is bounded by ``steps``, the distinct members by ``max_size``).

Score comparisons: accuracies compare exactly (they are counts over n); Pearson r is compared
after rounding to 12 decimals (``np.round(r, 12)``), so two ensembles whose r differ only by
float rounding tie (a duplicate candidate ties and is kept in greedy mode).

Speed: running float64 sums. Adding candidate ``c`` to an ensemble with sum ``S`` and weight ``W``
gives ``(S + c) / (W + 1)``, which for greedy is bit for bit what :func:`ensemble_predictions`
computes (Caruana's repeated members may differ from it in the last bit). Caruana mode scores all
candidates per step in one vectorised pass. For accuracy: in candidate chunks, only over the rows
that some candidate could still change (rows whose rounded prediction no candidate can move are
counted once; the test is exact, from per-row min/max over all candidates and the monotonicity of
float addition, division and rounding), with those rows kept in a compact working copy across
steps; sst rows are laid out in label order so "argmax == label" is two max-reductions per label.
For Pearson: from sums (:func:`ensemble.metrics.pearson_from_sums`) on centred predictions, with
``X @ S`` kept up to date by one cached matrix-vector product per distinct member added.

Honest estimate: :func:`cross_fit` splits the dev rows into two seeded halves (a function of
``(seed, repeat)`` and the sorted ids only), selects on one half and scores on the other, both
ways, ``repeats`` times; it reports the in-sample gain, the mean held-out gain and a bootstrap 95%
interval of that mean.
"""
from __future__ import annotations

from .average import ensemble_predictions, score_on
from .crossfit import cross_fit, crossfit_split
from .estimator import EnsembleSelector
from .inputs import TaskInput
from .keys import PEARSON_DECIMALS, score_key
from .modes import MODES
from .results import CrossFit, Fold, Ranked, Step, TaskSelection
from .task import select

__all__ = [
    "MODES",
    "PEARSON_DECIMALS",
    "Ranked",
    "Step",
    "Fold",
    "CrossFit",
    "TaskInput",
    "TaskSelection",
    "EnsembleSelector",
    "select",
    "cross_fit",
    "crossfit_split",
    "score_on",
    "ensemble_predictions",
    "score_key",
]
