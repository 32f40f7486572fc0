"""Diversity sampling: k-center greedy (Sener & Savarese, "Active Learning for Convolutional
Neural Networks: A Core-Set Approach", ICLR 2018).

Memory stays O(pool x features): the greedy keeps, per pool sample, its squared distance to the
nearest center (labeled or already chosen) and updates it with one matrix-vector product per
chosen sample; distances to the labeled set are computed in chunks. No N x N matrix is built.
"""

from __future__ import annotations

import numpy as np
import torch

from robustal.acquisition.base import AcquisitionFunction
from robustal.acquisition.registry import register_acquisition
from robustal.acquisition.scoring import embeddings, predict_probabilities
from robustal.errors import unknown_name_error

FEATURE_SPACES = ("softmax", "embedding")
DISTANCE_CHUNK_ELEMENTS = 2**22  # entries of one (chunk x pool) block of distances: 16 MiB in float32


def nearest_center_distances(points: torch.Tensor, centers: torch.Tensor, chunk_elements: int = DISTANCE_CHUNK_ELEMENTS) -> torch.Tensor:
    """Squared distance (n,) from each of `points` to its nearest center (+inf when there is none),
    taking `centers` in chunks so that at most `chunk_elements` distances exist at once."""
    nearest = torch.full((len(points),), float("inf"), dtype=points.dtype, device=points.device)
    point_norms = (points * points).sum(dim=1)
    chunk = max(1, chunk_elements // max(1, len(points)))
    for start in range(0, len(centers), chunk):
        block = centers[start : start + chunk]
        # ||a - b||^2 = ||a||^2 - 2 a.b + ||b||^2, clamped at 0 against rounding
        distances = point_norms[:, None] - 2.0 * points @ block.T + (block * block).sum(dim=1)[None, :]
        nearest = torch.minimum(nearest, distances.clamp_min_(0.0).min(dim=1).values)
    return nearest


def kcenter_greedy(pool_features: torch.Tensor, labeled_features: torch.Tensor, k: int, rng: np.random.Generator) -> np.ndarray:
    """Positions (into `pool_features`) of `k` samples chosen by k-center greedy.

    Each step picks the pool sample farthest (Euclidean) from its nearest center, where centers
    are the labeled samples and the samples chosen so far; ties go to the earlier position.
    Without labeled samples, the first center is drawn uniformly at random from `rng`.

    Distances are computed in float32 on features centred on the pool mean (which keeps the
    rounding of ||a||^2 - 2 a.b + ||b||^2 small); each step costs one matrix-vector product.
    """
    offset = pool_features.float().mean(dim=0)
    points = pool_features.float() - offset
    point_norms = (points * points).sum(dim=1)
    nearest = nearest_center_distances(points, labeled_features.float() - offset)
    chosen = np.empty(k, dtype=np.int64)
    for step in range(k):
        if step == 0 and len(labeled_features) == 0:
            position = int(rng.integers(len(points)))
        else:
            position = int(torch.argmax(nearest))
        chosen[step] = position
        distances = (point_norms - 2.0 * torch.mv(points, points[position]) + point_norms[position]).clamp_min_(0.0)
        torch.minimum(nearest, distances, out=nearest)
        nearest[position] = -1.0  # stays below every distance: never chosen twice, even among duplicates
    return chosen


@register_acquisition
class KCenterGreedy(AcquisitionFunction):
    """k-center greedy: repeatedly the pool sample farthest from all labeled and chosen samples,
    argmax_{x in pool} min_{c in centers} ||phi(x) - phi(c)||_2 (Sener & Savarese, ICLR 2018).

    `features`: the space phi of the distances, ``"softmax"`` (the paper's code: the model's
    probability outputs) or ``"embedding"`` (the penultimate layer, as Sener & Savarese).
    """

    name = "kcenter"

    def __init__(self, features: str = "softmax") -> None:
        if features not in FEATURE_SPACES:
            raise unknown_name_error("k-center feature space", features, FEATURE_SPACES)
        self.features = features

    def _select(self, context, pool, k, rng):
        extract = predict_probabilities if self.features == "softmax" else embeddings
        labeled = np.asarray(context.labeled_indices, dtype=np.int64)
        pool_features = extract(context, pool)
        labeled_features = extract(context, labeled) if len(labeled) else pool_features[:0]
        return pool[kcenter_greedy(pool_features, labeled_features, k, rng)]
