"""The base class every acquisition function inherits, and the pool context it reads.

Indices are always indices into the full training set: the pool, the labeled set and the
selection. `select` checks its arguments and its own result, so every function returns exactly
`k` unique pool indices or raises.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from robustal.acquisition.batch_sampling import batch_positions, check_sampling, top_k  # noqa: F401  (top_k: public here)
from robustal.errors import ConfigError, PoolExhaustedError, RobustALError
from robustal.models.base import Classifier

SCORING_BATCH_SIZE = 1000


@dataclass
class PoolContext:
    """What an acquisition function may look at.

    ``images`` is the whole training set (uint8, N x C x H x W); ``labeled_indices`` index into
    it; ``batch_size`` bounds how many samples are scored at once (memory stays bounded).
    """

    model: Classifier
    images: torch.Tensor
    labeled_indices: np.ndarray
    device: torch.device
    batch_size: int = SCORING_BATCH_SIZE


class AcquisitionFunction(ABC):
    """Chooses `k` samples of the unlabeled pool to label next.

    Subclasses take their options as keyword arguments of the constructor (with the paper's
    defaults) and store them as attributes of the same name; ``repr`` shows them.
    """

    name: ClassVar[str]
    # option defaults that a run's id names even when the run leaves them unset: options added
    # after runs of this function existed, whose default changed what it computes
    identity_defaults: ClassVar[dict[str, object]] = {}
    # options added after runs of this function existed whose default computes what the function
    # computed before: at that default they are left out of a run's id, even when given
    neutral_defaults: ClassVar[dict[str, object]] = {}

    def select(self, context: PoolContext, pool_indices: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """Exactly `k` unique indices (into the training set) drawn from `pool_indices`.

        Every random choice comes from `rng`. Raises `PoolExhaustedError` when `k` exceeds the
        pool, `ConfigError` when `k` < 1.
        """
        pool = np.asarray(pool_indices, dtype=np.int64)
        if pool.ndim != 1:
            raise ConfigError(f"pool indices must be one-dimensional, got shape {pool.shape}")
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        if k > len(pool):
            raise PoolExhaustedError(f"{self.name}: asked for k={k} samples but the pool holds only {len(pool)}")
        chosen = np.asarray(self._select(context, pool, int(k), rng), dtype=np.int64)
        _check_selection(self.name, chosen, pool, int(k))
        return chosen

    @abstractmethod
    def _select(self, context: PoolContext, pool: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """The selection proper; arguments are already validated (1 <= k <= len(pool))."""

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in vars(self).items() if not key.startswith("_"))
        return f"{type(self).__name__}({options})"


class ScoreAcquisition(AcquisitionFunction):
    """Selects the `k` pool samples of highest score (ties: the earlier pool position wins), or,
    with `sampling` ``power``, ``softmax`` or ``softrank``, draws them at random with probability
    growing with the score, at coldness `beta` (stochastic batch acquisition, Kirsch et al. 2023;
    see `robustal.acquisition.batch_sampling`).

    A family whose scores are one pure function of model outputs may declare it in the class
    statement, ``class Margin(Family, score_function=margin_scores)``; it becomes the static
    attribute ``score_function``. Subclasses with options of their own pass ``**batch_sampling``
    on to ``ScoreAcquisition.__init__``.
    """

    neutral_defaults = {"sampling": "top", "beta": 1.0}  # top-k: what every score function did before

    def __init__(self, sampling: str = "top", beta: float = 1.0) -> None:
        self.sampling, self.beta = check_sampling(self.name, sampling, beta)

    def __init_subclass__(cls, score_function: Callable | None = None, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if score_function is not None:
            cls.score_function = staticmethod(score_function)

    @abstractmethod
    def scores(self, context: PoolContext, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One score per pool sample, higher = more worth labeling."""

    def _select(self, context, pool, k, rng):
        return pool[batch_positions(self.scores(context, pool, rng), k, rng, self.sampling, self.beta, self.name)]


def torch_generator_from(rng: np.random.Generator, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch Generator on `device` seeded by one draw of `rng` (so torch noise follows the run's seed)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(rng.integers(2**63)))
    return generator


def check_positive_int(owner: str, option: str, value: object) -> int:
    """`value` as an int, or `ConfigError` naming `owner`'s `option` when it is not an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{owner}: {option} must be an integer >= 1, got {value!r}")
    return int(value)


def _check_selection(name: str, chosen: np.ndarray, pool: np.ndarray, k: int) -> None:
    if chosen.shape != (k,):
        raise RobustALError(f"{name} returned {chosen.shape} indices instead of exactly {k}")
    if len(np.unique(chosen)) != k:
        raise RobustALError(f"{name} returned duplicate indices")
    if not np.isin(chosen, pool).all():
        raise RobustALError(f"{name} returned indices outside the pool")
