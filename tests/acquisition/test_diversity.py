"""k-center greedy against a brute-force reference that builds the full distance matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustal.acquisition import build_acquisition
from robustal.acquisition.diversity import kcenter_greedy, nearest_center_distances
from robustal.acquisition.scoring import embeddings, predict_probabilities
from robustal.errors import ConfigError


def brute_force_kcenter(pool_features: np.ndarray, labeled_features: np.ndarray, k: int) -> list[int]:
    everything = np.concatenate([labeled_features, pool_features])
    distances = np.linalg.norm(everything[:, None, :] - everything[None, :, :], axis=2)  # full N x N
    centers = list(range(len(labeled_features)))
    chosen: list[int] = []
    for _ in range(k):
        nearest = distances[len(labeled_features) :, centers].min(axis=1)
        nearest[chosen] = -1.0
        position = int(np.argmax(nearest))
        chosen.append(position)
        centers.append(len(labeled_features) + position)
    return chosen


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dimensions", [2, 10])
def test_matches_the_brute_force_reference(seed, dimensions):
    rng = np.random.default_rng(seed)
    pool_features = rng.normal(size=(80, dimensions))
    labeled_features = rng.normal(size=(15, dimensions))
    chosen = kcenter_greedy(torch.from_numpy(pool_features).float(), torch.from_numpy(labeled_features).float(), 25, rng)
    reference = brute_force_kcenter(pool_features.astype(np.float32).astype(np.float64), labeled_features.astype(np.float32).astype(np.float64), 25)
    np.testing.assert_array_equal(chosen, reference)


def test_nearest_center_distances_do_not_depend_on_the_chunk_size():
    rng = np.random.default_rng(0)
    points = torch.from_numpy(rng.normal(size=(50, 6)))
    centers = torch.from_numpy(rng.normal(size=(33, 6)))
    exact = torch.cdist(points, centers).min(dim=1).values ** 2
    for chunk_elements in (1, 50, 51 * 7, 10**6):
        torch.testing.assert_close(nearest_center_distances(points, centers, chunk_elements), exact)
    assert torch.isinf(nearest_center_distances(points, centers[:0])).all()


def test_without_labeled_samples_the_first_center_is_random_then_greedy():
    features = torch.tensor([[0.0], [1.0], [10.0], [4.0]])
    firsts = {int(kcenter_greedy(features, features[:0], 1, np.random.default_rng(seed))[0]) for seed in range(30)}
    assert firsts == {0, 1, 2, 3}
    rng = np.random.default_rng(0)
    first = int(kcenter_greedy(features, features[:0], 1, np.random.default_rng(0))[0])
    chosen = kcenter_greedy(features, features[:0], 4, rng)
    assert chosen[0] == first
    assert len(set(chosen.tolist())) == 4


def test_identical_features_still_give_k_distinct_samples():
    features = torch.zeros(6, 3)
    chosen = kcenter_greedy(features, torch.ones(2, 3), 6, np.random.default_rng(0))
    assert sorted(chosen.tolist()) == list(range(6))


@pytest.mark.parametrize("features", ["softmax", "embedding"])
def test_acquisition_uses_the_requested_feature_space(features, digits_context, pool):
    extract = predict_probabilities if features == "softmax" else embeddings
    pool_features = extract(digits_context, pool).double().numpy()
    labeled_features = extract(digits_context, digits_context.labeled_indices).double().numpy()
    chosen = build_acquisition("kcenter", features=features).select(digits_context, pool, 12, np.random.default_rng(0))
    np.testing.assert_array_equal(chosen, pool[brute_force_kcenter(pool_features, labeled_features, 12)])


def test_unknown_feature_space_is_a_config_error():
    with pytest.raises(ConfigError, match="valid choices: embedding, softmax"):
        build_acquisition("kcenter", features="logits")
