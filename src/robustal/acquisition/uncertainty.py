"""Uncertainty sampling from the softmax output of one deterministic forward pass."""

from __future__ import annotations

from robustal.acquisition.base import ScoreAcquisition
from robustal.acquisition.registry import register_acquisition
from robustal.acquisition.scoring import entropy, predict_probabilities


@register_acquisition
class EntropySampling(ScoreAcquisition):
    """Highest prediction entropy H(p) = -sum_c p_c log p_c (Shannon, 1948; Settles, 2009)."""

    name = "entropy"

    def scores(self, context, pool, rng):
        return entropy(predict_probabilities(context, pool)).numpy()
