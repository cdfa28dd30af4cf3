"""Per-task ensemble selection over cached, unrounded dev predictions (numpy/scipy only).

This package sees arrays and ids, never models: no torch, typer, rich or pandas here.

Files, in flow order:

``checks``
    options, seeds, labels, arrays.
``keys``
    how scores compare.
``results``
    what is reported.
``average``
    the one weighted average.
``accuracy``
    the accuracy scorer's piece.
``workset``
    the rows a scorer works on.
``pearson``
    the Pearson scorer's piece.
``pool``
    the scorer over a library of candidates.
``greedy``
    the report's mode (and greedy-strict).
``caruana``
    forward selection with replacement.
``bagged``
    bagged ensemble selection.
``names``
    the modes' names and the default (no numpy: what the command line reads).
``modes``
    mode name -> mode.
``estimator``
    :class:`EnsembleSelector`, arrays in, ``weights_`` out.
``interval``
    the held-out interval (Nadeau and Bengio).
``crossfit``
    the repeated cross-fitted held-out gain.
``choice``
    ``auto``: the system with the best estimate, and the nested estimate of that choice.
``inputs``
    a task's candidates to a pool.
``task``
    :func:`select`: one task's selection, estimate and report.
``verdict``
    whether the ensemble is expected to beat the best single candidate, and the system saved.

Conventions
-----------
Per task, a candidate's unrounded predictions are a float array of shape ``(n, k)``: ``sst`` class
probabilities (k=5), ``para`` the paraphrase probability (k=1), ``sts`` the raw score (k=1).
An ensemble with weights ``w_i`` (integers; bagged: floats) predicts ``sum_i w_i * p_i / sum_i w_i``
(float64), which :func:`ensemble_predictions` computes; the metric is :func:`ensemble.metrics.score` on it.

Ties: candidates are ranked best-first by their own dev score, ties by secondary loss
(:func:`ensemble.metrics.secondary_loss`, lower first), then by the pool's order: the content hash
of their predictions (:func:`content_hash`, sha256 of the float64 C-order bytes, rows in id order),
then id. So the order, and every tie a mode breaks, follows the content, not registration.

Four modes (:data:`MODES`; a new mode is one new file plus one entry), and ``auto``, the default
(:data:`DEFAULT_MODE`): per task, every mode and the best single candidate cross-fitted on the same
folds, the one with the best held-out estimate kept (ties: the simpler, single < greedy <
greedy-strict < caruana < bagged), its estimate from a nested cross-fit (:mod:`.choice`):

``greedy`` (the SerBERTus report's method)
    The first is the ensemble; each next candidate joins (weight 1) only if the equal-weight
    average with it scores ``>=`` the current ensemble. ``max_size`` bounds the number of members;
    once reached, the rest are recorded as "max size reached".

``greedy-strict``
    The same, but a candidate joins only on a strict improvement (``>``).

``caruana`` (Caruana et al. 2004)
    Forward selection *with replacement* for ``steps`` steps over all candidates: each step adds
    the candidate whose addition maximises the dev score of the weighted average (ties: lower
    secondary loss of the resulting ensemble, then the pool's order). The shortest prefix of the
    steps that reaches the best dev score is kept; weights are the counts. ``max_size`` bounds the
    number of *distinct* members: once that many are in, only current members can be added again.

``bagged`` (Caruana et al. 2006, "Getting the most out of ensemble selection")
    ``bags`` random subsets of ``fraction`` of the library (seeded by ``seed``), caruana on each;
    weights are the mean of the bags' weight vectors, each normalised to sum 1 (floats).

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

Honest estimate: :func:`cross_fit` runs repeated K-fold cross-fitting (``repeats`` x ``folds``,
splits a function of ``(seed, repeat)`` and the sorted ids only): on each fold, the gain of the
ensemble selected on the other folds over the best single candidate chosen there. It reports the
in-sample gain, the mean fold gain and the Nadeau-Bengio (2003) corrected resampled t interval
with ``folds - 1`` degrees of freedom (:mod:`.interval`): an interval for the gain, on new rows,
of the ensemble selected on all of dev over the best single candidate chosen on all of dev.
"""
from __future__ import annotations

from .. import lazy_names
from .verdict import SYSTEMS, choose_systems, verdict   # eager: the name verdict is also a file's (no numpy here)

__all__ = [
    "MODES",
    "MODE_NAMES",
    "AUTO",
    "FIXED_DEFAULT",
    "SELECT_MODES",
    "SYSTEM_ORDER",
    "choose",
    "nested_cross_fit",
    "DEFAULT_MODE",
    "PEARSON_DECIMALS",
    "Ranked",
    "Step",
    "Fold",
    "CrossFit",
    "TaskInput",
    "TaskSelection",
    "EnsembleSelector",
    "select",
    "verdict",
    "SYSTEMS",
    "choose_systems",
    "cross_fit",
    "kfold_splits",
    "nb_interval",
    "content_hash",
    "score_on",
    "ensemble_predictions",
    "score_key",
]

FILES = ("checks", "keys", "results", "average", "accuracy", "workset", "pearson", "pool", "greedy", "caruana",
         "bagged", "names", "modes", "estimator", "interval", "crossfit", "choice", "inputs", "task", "verdict")
__getattr__ = lazy_names(__name__, {
    "ensemble_predictions": "average",
    "score_on": "average",
    "cross_fit": "crossfit",
    "kfold_splits": "crossfit",
    "EnsembleSelector": "estimator",
    "TaskInput": "inputs",
    "PEARSON_DECIMALS": "keys",
    "score_key": "keys",
    "nb_interval": "interval",
    "DEFAULT_MODE": "names",
    "MODE_NAMES": "names",
    "AUTO": "names",
    "FIXED_DEFAULT": "names",
    "SELECT_MODES": "names",
    "SYSTEM_ORDER": "choice",
    "choose": "choice",
    "nested_cross_fit": "choice",
    "MODES": "modes",
    "content_hash": "pool",
    "CrossFit": "results",
    "Fold": "results",
    "Ranked": "results",
    "Step": "results",
    "TaskSelection": "results",
    "select": "task",
})   # loaded on first use: importing the package loads no scipy
