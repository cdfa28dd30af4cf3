"""EnsembleSelector: one task's selection in the auto-sklearn style (fit, then read ``*_``)."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import EnsembleError
from ..tasks import get_task
from .average import ensemble_predictions, score_on
from .checks import check_budget
from .keys import loss_key, score_keys
from .modes import FIXED_DEFAULT, get_mode
from .pool import Pool
from .results import Ranked


def ranked(pool: Pool, order: list[int]) -> list[Ranked]:
    """The best-first order with own scores, and the tie-break that decided each tied place."""
    keys = score_keys(pool.task, pool.own_scores())
    own = pool.own_scores()
    out = []
    for r, i in enumerate(order, 1):
        same = np.flatnonzero(keys == keys[i])
        if len(same) == 1:
            out.append(Ranked(r, pool.ids[i], float(own[i]), None, None))
            continue
        li = loss_key(pool.own_loss(i))
        tb = "content hash" if any(loss_key(pool.own_loss(int(j))) == li for j in same if j != i) else "secondary loss"
        out.append(Ranked(r, pool.ids[i], float(own[i]), float(li), tb))
    return out


class EnsembleSelector:
    """Ensemble selection for one task (auto-sklearn style: fit, then read ``*_``).

    Parameters: ``task``; ``mode`` (a name in :data:`MODES`); ``max_size`` (greedy: members;
    caruana: distinct members; bagged: distinct members per bag; None = no bound); ``steps``
    (caruana, bagged); ``bags``, ``fraction``, ``seed`` (bagged).

    After :meth:`fit`: ``candidates_`` (ids, ascending), ``order_`` (list of :class:`Ranked`,
    best-first with tie-breaks), ``trajectory_`` (list of :class:`Step`), ``members_`` (ids in
    order added), ``weights_`` (id -> int; bagged: float), ``score_`` (ensemble dev score),
    ``best_single_`` and ``best_single_score_``, ``n_rows_``. ``settings``: the mode's settings.
    """

    def __init__(self, task: str, mode: str = FIXED_DEFAULT, max_size: int | None = None, steps: int = 50,
                 bags: int = 20, fraction: float = 0.5, seed: int = 0):
        get_task(task)
        self._mode = get_mode(mode)
        self.budget = check_budget(max_size, steps, bags=bags, fraction=fraction, seed=seed)
        self.task = task
        self.mode = mode
        self.max_size = self.budget.max_size
        self.steps = self.budget.steps

    @property
    def settings(self) -> dict:
        """The mode's settings (name -> value), e.g. ``{"steps": 50}`` for caruana."""
        return self._mode.settings_of(self.budget)

    def unfitted(self) -> "EnsembleSelector":
        """A new, unfitted selector with the same mode and settings (cross-fitting refits it)."""
        b = self.budget
        return EnsembleSelector(self.task, self.mode, b.max_size, b.steps, b.bags, b.fraction, b.seed)

    def fit(self, preds: Mapping[str, np.ndarray], labels) -> "EnsembleSelector":
        """``preds``: candidate id -> predictions ``(n, k)`` whose rows are aligned to ``labels``."""
        return self.fit_pool(Pool.from_aligned(self.task, preds, labels))

    def fit_pool(self, pool: Pool) -> "EnsembleSelector":
        """Fit on a pool already built (``select``, cross-fitting and the benchmark share pools)."""
        order = pool.ranking()
        members, weights, traj, sc = self._mode.pick(pool, order, self.budget)
        self.candidates_ = sorted(pool.ids)
        self.order_ = ranked(pool, order)
        self.trajectory_ = traj
        self.members_ = members
        self.weights_ = weights
        self.score_ = float(sc)
        self.best_single_ = pool.ids[order[0]]
        self.best_single_score_ = float(pool.own_scores()[order[0]])
        self.n_rows_ = pool.n
        return self

    def note(self) -> str | None:
        """The mode's note on the fitted selection (None: the mode has none)."""
        self._check_fitted()
        return None if self._mode.note is None else self._mode.note(self.budget, self.trajectory_)

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise EnsembleError("the selector is not fitted yet: call fit() first")

    def predict(self, preds: Mapping[str, np.ndarray]) -> np.ndarray:
        """Ensemble predictions ``(n, k)`` from the members' aligned predictions."""
        self._check_fitted()
        return ensemble_predictions(preds, self.weights_)

    def score(self, preds: Mapping[str, np.ndarray], labels) -> float:
        self._check_fitted()
        return score_on(self.task, preds, labels, self.weights_)

    @property
    def takes_steps(self) -> bool:
        """Whether the mode is bounded by ``steps``."""
        return self._mode.takes_steps
