"""TypiClust and ProbCover against brute-force references on hand-made points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustal.acquisition import build_acquisition
from robustal.acquisition.typicality import (
    ball_graph,
    edge_bounded_radius,
    mean_neighbour_distances,
    probcover_positions,
    purity_radius,
    typiclust_positions,
    typicality,
    unit_embeddings,
)
from robustal.errors import ConfigError


def blobs(sizes, seed=0, spread=0.05, dimensions=3):
    """Well-separated Gaussian blobs (centres 1 apart on the axes), rows blob by blob."""
    rng = np.random.default_rng(seed)
    parts = [np.eye(dimensions)[b] + spread * rng.normal(size=(size, dimensions)) for b, size in enumerate(sizes)]
    return torch.from_numpy(np.concatenate(parts)).float()


def brute_distances(points):
    return torch.cdist(points.double(), points.double()).numpy()


@pytest.mark.parametrize("chunk_elements", [1, 37, 10**6])
def test_mean_neighbour_distances_match_brute_force(chunk_elements):
    points = torch.from_numpy(np.random.default_rng(0).normal(size=(30, 4))).float()
    distances = np.sort(brute_distances(points), axis=1)[:, 1:6]  # column 0: the point itself
    np.testing.assert_allclose(mean_neighbour_distances(points, 5, chunk_elements), distances.mean(axis=1), rtol=1e-4, atol=1e-4)


def test_typicality_is_the_inverse_mean_distance_with_k_at_most_half_the_cluster():
    points = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    # K = min(20, 4 // 2) = 2: nearest two of each point
    expected = 1.0 / (np.array([(1 + 3) / 2, (1 + 2) / 2, (2 + 3) / 2, (4 + 6) / 2]) + 1e-5)
    np.testing.assert_allclose(typicality(points, 20), expected, rtol=1e-6)
    assert typicality(points[:1], 20).tolist() == [0.0]


def test_typiclust_takes_the_most_typical_point_of_the_largest_uncovered_clusters():
    points = blobs([40, 30, 20])
    blob_of = np.repeat([0, 1, 2], [40, 30, 20])
    # no labeled point: three clusters, visited largest first
    chosen = typiclust_positions(points, 0, 3, np.random.default_rng(0))
    assert blob_of[chosen].tolist() == [0, 1, 2]
    for position in chosen:
        members = np.flatnonzero(blob_of == blob_of[position])
        assert position == members[np.argmax(typicality(points[members], 20))]
    # the first point (blob 0) labeled: k = 2 goes to the two uncovered blobs
    chosen = typiclust_positions(points, 1, 2, np.random.default_rng(0))
    assert sorted(blob_of[1:][chosen].tolist()) == [1, 2]


def test_typiclust_returns_k_distinct_points_even_beyond_the_clusters():
    points = blobs([6, 6])
    chosen = typiclust_positions(points, 2, 10, np.random.default_rng(1), max_clusters=2)
    assert sorted(chosen.tolist()) == list(range(10))


@pytest.mark.parametrize("chunk_elements", [1, 50, 10**6])
def test_ball_graph_matches_brute_force(chunk_elements):
    points = torch.from_numpy(np.random.default_rng(2).normal(size=(25, 2))).float()
    graph = ball_graph(points, 0.8, chunk_elements=chunk_elements).toarray()
    expected = brute_distances(points) < 0.8
    np.fill_diagonal(expected, True)
    np.testing.assert_array_equal(graph, expected)


def test_ball_graph_refuses_too_many_edges():
    with pytest.raises(ConfigError, match="smaller delta"):
        ball_graph(torch.zeros(10, 2), 1.0, max_edges=99)


def brute_force_probcover(adjacency: np.ndarray, labeled_count: int, k: int) -> list[int]:
    covered = adjacency[:labeled_count].any(axis=0)
    chosen = []
    for _ in range(k):
        degree = (adjacency & ~covered[None, :]).sum(axis=1).astype(float)
        degree[:labeled_count] = -1
        degree[[labeled_count + c for c in chosen]] = -1
        position = int(np.argmax(degree))
        chosen.append(position - labeled_count)
        covered |= adjacency[position]
    return chosen


@pytest.mark.parametrize("labeled_count", [0, 5])
def test_probcover_greedy_matches_brute_force(labeled_count):
    points = torch.from_numpy(np.random.default_rng(3).uniform(size=(60, 2))).float()
    graph = ball_graph(points, 0.2)
    chosen = probcover_positions(graph, labeled_count, 8, np.random.default_rng(0))
    assert chosen.tolist() == brute_force_probcover(graph.toarray(), labeled_count, 8)


def test_probcover_draws_at_random_once_everything_is_covered():
    graph = ball_graph(blobs([5, 5]), 0.5)  # two cliques
    firsts = set()
    for seed in range(20):
        chosen = probcover_positions(graph, 0, 4, np.random.default_rng(seed))
        assert sorted(chosen[:2] // 5) == [0, 1]  # one per ball first
        firsts.add(tuple(chosen[2:]))
    assert len(firsts) > 1


def test_purity_radius_is_the_largest_delta_with_enough_pure_balls():
    points = blobs([30, 30], spread=0.2, dimensions=2)
    blob_of = np.repeat([0, 1], 30)
    distances = brute_distances(points)
    other = np.where(blob_of[:, None] != blob_of[None, :], distances, np.inf).min(axis=1)
    for purity in (0.5, 0.9):
        delta = purity_radius(points, 2, purity, np.random.default_rng(0))
        assert np.mean(other >= delta - 1e-6) >= purity  # a ball B(x, delta) is pure iff delta <= r(x)
        assert np.mean(other >= delta + 1e-5) < purity  # any larger delta is below the purity


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("probcover", {"delta": 0.0}, "delta must be a number in"),
        ("probcover", {"delta": 2.5}, "delta must be a number in"),
        ("probcover", {"purity": 1.0}, "purity must be a number strictly between 0 and 1"),
        ("typiclust", {"neighbours": 0}, "neighbours must be an integer >= 1"),
        ("typiclust", {"max_clusters": 10**9}, "max_clusters must be at most"),
    ],
)
def test_options_are_validated(name, options, message):
    with pytest.raises(ConfigError, match=message):
        build_acquisition(name, **options)


def test_probcover_covers_the_models_unit_embedding_with_the_labeled_set_first(digits_context, pool):
    labeled = digits_context.labeled_indices
    points = unit_embeddings(digits_context, labeled, pool)
    torch.testing.assert_close(points.norm(dim=1), torch.ones(len(points)))
    expected = pool[probcover_positions(ball_graph(points, 0.3), len(labeled), 10, np.random.default_rng(0))]
    chosen = build_acquisition("probcover", delta=0.3).select(digits_context, pool, 10, np.random.default_rng(0))
    np.testing.assert_array_equal(chosen, expected)


def test_edge_bounded_radius_keeps_the_graph_under_the_bound():
    points = blobs([100, 100], spread=0.3)
    radius = edge_bounded_radius(points, 4000, np.random.default_rng(0))
    edges = ball_graph(points, radius).nnz
    assert 0.5 * 0.8 * 4000 < edges <= 4000  # the sample's quantile: near 0.8 of the bound


def _fixed_embedding_context(rows: int = 120):
    from robustal.acquisition import PoolContext
    from robustal.models import build_model

    torch.manual_seed(0)
    images = (torch.rand(rows, 1, 8, 8) * 255).to(torch.uint8)
    return PoolContext(build_model("small_cnn", 1, 10, 8).eval(), images, np.arange(10), torch.device("cpu"))


@pytest.mark.parametrize("name", ["typiclust", "probcover"])
def test_a_fixed_embedding_from_a_file_replaces_the_model_s(name, tmp_path):
    from robustal.acquisition.typicality import probcover_positions, ball_graph, typiclust_positions

    context = _fixed_embedding_context()
    fixed = blobs([40, 40, 40], dimensions=4).numpy().astype(np.float64)
    np.save(tmp_path / "embedding.npy", fixed)
    pool = np.arange(10, 120)
    options = {"delta": 0.3} if name == "probcover" else {}
    chosen = build_acquisition(name, embedding=str(tmp_path / "embedding.npy"), **options).select(
        context, pool, 6, np.random.default_rng(1)
    )
    # the same positions as the function's core on the file's rows (labeled first, unit length)
    rows = torch.from_numpy(fixed[np.concatenate([np.arange(10), pool])].astype(np.float32))
    points = rows / rows.norm(dim=1, keepdim=True)
    rng = np.random.default_rng(1)
    if name == "typiclust":
        expected = typiclust_positions(points, 10, 6, rng)
    else:
        expected = probcover_positions(ball_graph(points, 0.3), 10, 6, rng)
    assert chosen.tolist() == pool[expected].tolist()


def test_a_fixed_embedding_that_is_not_one_row_of_floats_per_image_is_refused(tmp_path):
    from robustal.errors import DataError

    context = _fixed_embedding_context()
    np.save(tmp_path / "short.npy", np.ones((50, 4)))
    with pytest.raises(DataError, match="has 50 rows but the training split 120 images"):
        build_acquisition("typiclust", embedding=str(tmp_path / "short.npy")).select(context, np.arange(10, 120), 5, np.random.default_rng(0))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="cannot read the embedding .*objects.npy"):
        build_acquisition("probcover", embedding=str(tmp_path / "objects.npy"))
    np.save(tmp_path / "nan.npy", np.full((120, 2), np.nan))
    with pytest.raises(DataError, match="finite floats"):
        build_acquisition("typiclust", embedding=str(tmp_path / "nan.npy"))
