"""Uncertainty sampling from the softmax output of one deterministic forward pass.

Each function's score is a pure function of the pool's probability matrix p (n x classes),
higher = more worth labeling, so it can be checked on hand-made matrices:
`entropy`, `margin_scores`, `least_confidence_scores`, `gini_scores`, and `mcp_order` (a
ranking rather than a score). p_(1) >= p_(2) denote a row's two largest probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch

from robustal.acquisition.base import AcquisitionFunction, ScoreAcquisition
from robustal.acquisition.registry import register_acquisition
from robustal.acquisition.scoring import entropy, predict_probabilities, top_two


def margin_scores(probabilities: torch.Tensor) -> torch.Tensor:
    """Negative margin -(p_(1) - p_(2)): highest for the smallest gap between the top two."""
    values, _ = top_two(probabilities)
    return values[:, 1] - values[:, 0]


def least_confidence_scores(probabilities: torch.Tensor) -> torch.Tensor:
    """1 - p_(1): highest for the smallest top probability."""
    return 1.0 - torch.as_tensor(probabilities).max(dim=1).values


def gini_scores(probabilities: torch.Tensor) -> torch.Tensor:
    """Gini impurity 1 - sum_c p_c^2 (DeepGini)."""
    probabilities = torch.as_tensor(probabilities)
    return 1.0 - (probabilities * probabilities).sum(dim=1)


def mcp_order(probabilities: torch.Tensor) -> np.ndarray:
    """All row positions in the order multiple-boundary clustering and prioritization picks them.

    Rows are grouped by their decision boundary (top class, second class); inside a group they
    are ranked by the ratio p_(2) / p_(1) (closer to 1 = closer to that boundary), highest
    first. Selection goes round by round: round r takes the r-th best row of every group that
    still has one. Within a round, rows come by ratio (highest first), so truncating the order
    to k rows fills a last, partial round with the groups whose best remaining ratio is highest,
    as the reference implementation does. Remaining ties: the earlier position first.
    """
    values, classes = top_two(probabilities)
    ratio = (values[:, 1] / values[:, 0]).double().numpy()
    num_classes = torch.as_tensor(probabilities).shape[1]
    group = (classes[:, 0] * num_classes + classes[:, 1]).numpy()
    positions = np.arange(len(ratio))
    by_group = np.lexsort((positions, -ratio, group))  # groups in turn, best ratio first
    sorted_groups = group[by_group]
    group_starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    group_sizes = np.diff(np.r_[group_starts, len(by_group)])
    rank_in_group = positions - np.repeat(group_starts, group_sizes)
    round_of = np.empty_like(positions)
    round_of[by_group] = rank_in_group
    return np.lexsort((positions, -ratio, round_of))


class ProbabilityScoreAcquisition(ScoreAcquisition):
    """Scores are ``score_function(p)`` of the pool's softmax probabilities (one forward pass)."""

    score_function: ClassVar[Callable[[torch.Tensor], torch.Tensor]]

    def scores(self, context, pool, rng):
        return type(self).score_function(predict_probabilities(context, pool)).numpy()


@register_acquisition
class EntropySampling(ProbabilityScoreAcquisition, score_function=entropy):
    """Highest prediction entropy H(p) = -sum_c p_c log p_c (Shannon, 1948; Settles, 2009)."""

    name = "entropy"


@register_acquisition
class MarginSampling(ProbabilityScoreAcquisition, score_function=margin_scores):
    """Smallest margin p_(1) - p_(2) between the two most probable classes (Scheffer et al., 2001)."""

    name = "margin"


@register_acquisition
class LeastConfidence(ProbabilityScoreAcquisition, score_function=least_confidence_scores):
    """Smallest top probability p_(1), i.e. highest 1 - p_(1) (Lewis & Gale, 1994; Settles, 2009)."""

    name = "least_confidence"


@register_acquisition
class DeepGini(ProbabilityScoreAcquisition, score_function=gini_scores):
    """Highest Gini impurity 1 - sum_c p_c^2 (Feng et al., "DeepGini", ISSTA 2020)."""

    name = "gini"


@register_acquisition
class MultipleBoundaryClustering(AcquisitionFunction):
    """Multiple-boundary clustering and prioritization (Shen et al., "MCP", ASE 2020).

    Groups the pool by (top class, second class) and takes, round-robin over the groups, the
    sample with the highest ratio p_(2) / p_(1); see `mcp_order` for the exact order.
    """

    name = "mcp"

    def _select(self, context, pool, k, rng):
        return pool[mcp_order(predict_probabilities(context, pool))[:k]]
