"""Stochastic batch acquisition: k samples drawn with probability growing with their score,
instead of the k highest (Kirsch, Farquhar, Atighehchian, Jesson, Branchaud-Charron & Gal,
"Stochastic Batch Acquisition: A Simple Baseline for Deep Active Learning", TMLR 2023; as in
baal). With s_i the scores, beta > 0 the coldness (1 / temperature), and r_i the rank of s_i
(1 = highest), sample i is drawn with probability proportional to

- ``power``:    s_i^beta          (scores must be >= 0)
- ``softmax``:  exp(beta s_i)
- ``softrank``: r_i^-beta

k samples are drawn without replacement by the Gumbel-top-k trick: the k largest keys
log w_i + G_i, G_i i.i.d. standard Gumbel from the run's generator, are an exact sample of
successive draws without replacement. ``top`` (the default) keeps the k highest scores.
"""

from __future__ import annotations

import math

import numpy as np

from robustal.errors import ConfigError, unknown_name_error

SAMPLING_RULES = ("top", "power", "softmax", "softrank")
MAX_BETA = 1e6


def check_sampling(owner: str, sampling: object, beta: object) -> tuple[str, float]:
    """`sampling` and `beta` validated (`ConfigError` naming `owner` otherwise)."""
    if sampling not in SAMPLING_RULES:
        raise unknown_name_error(f"{owner} sampling", sampling, SAMPLING_RULES)
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 < beta <= MAX_BETA:
        raise ConfigError(f"{owner}: beta must be a number in (0, {MAX_BETA:g}], got {beta!r}")
    if sampling == "top" and beta != 1.0:
        raise ConfigError(f"{owner}: beta only applies to sampling power, softmax or softrank, not top")
    return str(sampling), float(beta)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the `k` highest scores, highest first, ties broken by position (stable)."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.lexsort((np.arange(len(scores)), -scores))
    return order[:k]


def log_weights(scores: np.ndarray, sampling: str, beta: float, owner: str) -> np.ndarray:
    """log w_i of the sampling rule (module doc); -inf where the weight is 0 (power, s_i = 0)."""
    scores = np.asarray(scores, dtype=np.float64)
    if sampling == "softmax":
        return beta * scores
    if sampling == "softrank":
        ranks = np.empty(len(scores))
        ranks[top_k(scores, len(scores))] = np.arange(1, len(scores) + 1)
        return -beta * np.log(ranks)
    if (scores < 0).any():
        raise ConfigError(f"{owner}: sampling power needs scores >= 0 (got {scores.min():.4g}); use softmax or softrank")
    with np.errstate(divide="ignore"):
        return beta * np.log(scores)


def batch_positions(scores: np.ndarray, k: int, rng: np.random.Generator, sampling: str = "top", beta: float = 1.0, owner: str = "") -> np.ndarray:
    """Positions of `k` distinct samples chosen by `sampling` (module doc); ``top`` draws nothing
    from `rng`. Samples of weight 0 come last, in position order."""
    if sampling == "top":
        return top_k(scores, k)
    keys = log_weights(scores, sampling, beta, owner) + rng.gumbel(size=len(scores))
    return top_k(np.where(np.isnan(keys), -math.inf, keys), k)
