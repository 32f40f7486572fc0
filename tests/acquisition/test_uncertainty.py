"""Uncertainty scores on hand-made probability matrices whose right answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robustal.acquisition import build_acquisition
from robustal.acquisition.scoring import entropy
from robustal.acquisition.uncertainty import gini_scores, least_confidence_scores, margin_scores, mcp_order
from robustal.errors import ConfigError

PROBABILITIES = torch.tensor(
    [
        [0.90, 0.05, 0.05],  # confident
        [0.50, 0.50, 0.00],  # a tie between two classes
        [0.40, 0.30, 0.30],  # spread
        [1 / 3, 1 / 3, 1 / 3],  # uniform
        [0.60, 0.35, 0.05],
    ],
    dtype=torch.float64,
)


def test_entropy_values():
    expected = [
        -(0.9 * math.log(0.9) + 2 * 0.05 * math.log(0.05)),
        math.log(2),
        -(0.4 * math.log(0.4) + 2 * 0.3 * math.log(0.3)),
        math.log(3),
        -(0.6 * math.log(0.6) + 0.35 * math.log(0.35) + 0.05 * math.log(0.05)),
    ]
    np.testing.assert_allclose(entropy(PROBABILITIES), expected, rtol=1e-12)


def test_margin_scores_are_minus_the_gap_between_the_top_two():
    np.testing.assert_allclose(margin_scores(PROBABILITIES), [-0.85, 0.0, -0.1, 0.0, -0.25], atol=1e-12)


def test_least_confidence_scores_are_one_minus_the_top_probability():
    np.testing.assert_allclose(least_confidence_scores(PROBABILITIES), [0.1, 0.5, 0.6, 2 / 3, 0.4], atol=1e-12)


def test_gini_scores_are_the_gini_impurity():
    expected = [1 - 0.81 - 2 * 0.0025, 0.5, 1 - 0.16 - 2 * 0.09, 2 / 3, 1 - 0.36 - 0.1225 - 0.0025]
    np.testing.assert_allclose(gini_scores(PROBABILITIES), expected, atol=1e-12)


def test_margin_needs_two_classes():
    with pytest.raises(ConfigError, match="classes >= 2"):
        margin_scores(torch.ones(4, 1))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("entropy", [3, 2, 4]),  # log 3 = 1.099 > H(.4,.3,.3) = 1.089 > H(.6,.35,.05) = 0.824 > log 2
        ("least_confidence", [3, 2, 1]),  # 2/3 > 0.6 > 0.5 > 0.4
        ("gini", [3, 2, 4]),  # 2/3 > 0.66 > 0.515 > 0.5
        ("margin", [1, 3, 2]),  # gaps 0, 0 (tie: earlier pool position first), 0.1
    ],
)
def test_selection_end_to_end_from_the_model_output(name, expected, probability_context):
    context = probability_context(PROBABILITIES)
    pool = np.arange(len(PROBABILITIES))
    chosen = build_acquisition(name).select(context, pool, 3, np.random.default_rng(0))
    np.testing.assert_array_equal(chosen, expected)


def test_selection_returns_training_set_indices_not_pool_positions(probability_context):
    probabilities = torch.full((30, 3), 0.05).index_put_((torch.arange(30), torch.zeros(30, dtype=torch.long)), torch.tensor(0.9))
    probabilities[17] = torch.tensor([0.34, 0.33, 0.33])
    probabilities[4] = torch.tensor([0.5, 0.25, 0.25])
    context = probability_context(probabilities)
    pool = np.array([29, 17, 3, 4, 11])
    chosen = build_acquisition("least_confidence").select(context, pool, 2, np.random.default_rng(0))
    np.testing.assert_array_equal(chosen, [17, 4])


def test_mcp_order_on_a_hand_made_matrix():
    probabilities = torch.tensor(
        [
            [0.70, 0.20, 0.10],  # group (0, 1), ratio 0.286
            [0.50, 0.40, 0.10],  # group (0, 1), ratio 0.8
            [0.10, 0.60, 0.30],  # group (1, 2), ratio 0.5
            [0.45, 0.10, 0.45],  # group (0, 2) (tie: the lower class is the top), ratio 1
            [0.60, 0.35, 0.05],  # group (0, 1), ratio 0.583
            [0.20, 0.30, 0.50],  # group (2, 1), ratio 0.6
        ]
    )
    # round 1: the best of each group, by ratio: 3 (1.0), 1 (0.8), 5 (0.6), 2 (0.5);
    # round 2: only group (0, 1) is left: 4 (0.583), then 0
    np.testing.assert_array_equal(mcp_order(probabilities), [3, 1, 5, 2, 4, 0])


def reference_mcp(probabilities: np.ndarray, k: int) -> list[int]:
    """The reference algorithm, step by step: full round-robin rounds while k covers every non-empty
    group, then the groups whose best remaining ratio is highest."""
    classes = probabilities.shape[1]
    groups: dict[int, list[tuple[float, int]]] = {}
    for position, row in enumerate(probabilities):
        order = np.argsort(-row, kind="stable")
        groups.setdefault(order[0] * classes + order[1], []).append((row[order[1]] / row[order[0]], position))
    for members in groups.values():
        members.sort(key=lambda item: (-item[0], item[1]))
    chosen: list[int] = []
    while k - len(chosen) >= sum(1 for members in groups.values() if members) > 0:
        for key in sorted(groups):
            if groups[key]:
                chosen.append(groups[key].pop(0)[1])
    leaders = sorted((members[0] for members in groups.values() if members), key=lambda item: (-item[0], item[1]))
    chosen.extend(position for _, position in leaders[: k - len(chosen)])
    return chosen


@pytest.mark.parametrize("seed", range(5))
def test_mcp_matches_the_reference_algorithm(seed):
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.full(4, 0.5), size=60)
    order = mcp_order(torch.from_numpy(probabilities))
    for k in (1, 5, 11, 23, 60):
        assert sorted(order[:k]) == sorted(reference_mcp(probabilities, k))
