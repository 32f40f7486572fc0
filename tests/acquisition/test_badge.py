"""BADGE: the closed-form gradient embeddings against autograd, the factored k-means++ against a
reference on the materialised embeddings, and the seeding's distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustal.acquisition import build_acquisition
from robustal.acquisition.badge import gradient_embeddings, kmeans_plus_plus_factored, last_layer_factors
from robustal.runtime import to_float


def test_embedding_is_the_gradient_of_the_predicted_class_loss_wrt_the_last_weights(digits_context, pool):
    model = digits_context.model.eval()
    indices = pool[:4]
    residuals, features = last_layer_factors(digits_context, indices)
    closed_form = gradient_embeddings(residuals, features)
    for row, index in enumerate(indices):
        x = to_float(digits_context.images[index : index + 1])
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, logits.argmax(dim=1))
        (gradient,) = torch.autograd.grad(loss, model.head.weight)
        torch.testing.assert_close(closed_form[row], gradient.flatten(), rtol=1e-4, atol=1e-6)


def reference_kmeans_plus_plus(embeddings: np.ndarray, k: int, rng: np.random.Generator) -> list[int]:
    """The authors' seeding on the materialised embeddings (same random draws as robustal's)."""
    chosen = [int(np.argmax(np.linalg.norm(embeddings, axis=1)))]
    while len(chosen) < k:
        squared = ((embeddings[:, None, :] - embeddings[None, chosen, :]) ** 2).sum(axis=2).min(axis=1)
        squared[chosen] = 0.0
        cumulative = np.cumsum(squared)
        chosen.append(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")))
    return chosen


@pytest.mark.parametrize("seed", range(3))
def test_factored_seeding_matches_the_reference_on_materialised_embeddings(seed):
    data = np.random.default_rng(seed)
    residuals = torch.from_numpy(data.normal(size=(60, 4)))
    features = torch.from_numpy(data.normal(size=(60, 7)))
    chosen = kmeans_plus_plus_factored(residuals, features, 20, np.random.default_rng(seed))
    reference = reference_kmeans_plus_plus(gradient_embeddings(residuals, features).numpy(), 20, np.random.default_rng(seed))
    np.testing.assert_array_equal(chosen, reference)


def test_first_seed_is_the_largest_norm_then_d2_sampling():
    # embeddings (one class, one feature): g = r * h = 0, 1, 3, 10 (the largest norm, seeded first)
    residuals = torch.ones(4, 1)
    features = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
    counts = np.zeros(4)
    for seed in range(3000):
        first, second = kmeans_plus_plus_factored(residuals, features, 2, np.random.default_rng(seed))
        assert first == 3
        counts[second] += 1
    squared = np.array([100.0, 81.0, 49.0, 0.0])  # D^2 to the first seed
    np.testing.assert_allclose(counts / counts.sum(), squared / squared.sum(), atol=0.03)


def test_identical_embeddings_still_give_k_distinct_samples():
    chosen = kmeans_plus_plus_factored(torch.ones(6, 3), torch.ones(6, 2), 6, np.random.default_rng(0))
    assert sorted(chosen.tolist()) == list(range(6))


def test_acquisition_seeds_on_the_models_gradient_embeddings(digits_context, pool):
    residuals, features = last_layer_factors(digits_context, pool)
    expected = pool[kmeans_plus_plus_factored(residuals, features, 10, np.random.default_rng(5))]
    chosen = build_acquisition("badge").select(digits_context, pool, 10, np.random.default_rng(5))
    np.testing.assert_array_equal(chosen, expected)
