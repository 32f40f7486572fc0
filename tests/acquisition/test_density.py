"""DRE: bins, largest-remainder quotas, exact k, and the batch keeps the pool's entropy histogram."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustal.acquisition import build_acquisition
from robustal.acquisition.density import dre_positions, histogram_bins, largest_remainder_quotas, paper_quotas
from robustal.acquisition.scoring import entropy
from robustal.errors import ConfigError


@pytest.mark.parametrize("seed", range(3))
def test_bins_count_like_numpy_histogram_and_the_maximum_is_in_the_last_bin(seed):
    values = np.random.default_rng(seed).gamma(2.0, size=1000)
    values[:3] = values.max()
    bin_of = histogram_bins(values, 50)
    counts, _ = np.histogram(values, bins=50, range=(values.min(), values.max()))
    np.testing.assert_array_equal(np.bincount(bin_of, minlength=50), counts)
    assert (bin_of[:3] == 49).all()
    assert bin_of[np.argmin(values)] == 0


def test_all_equal_values_share_one_bin():
    assert len(set(histogram_bins(np.full(20, 0.7), 50).tolist())) == 1


def test_quotas_on_a_hand_made_histogram():
    # ideal shares 4 * (6, 3, 1) / 10 = (2.4, 1.2, 0.4): floors (2, 1, 0), the one left over goes to
    # the largest remainder (0.4); the paper's ceil would ask for (3, 2, 1) = 6 and truncate
    np.testing.assert_array_equal(largest_remainder_quotas(np.array([6, 3, 1]), 4, np.random.default_rng(0)), [2, 1, 1])
    # exact shares need no rounding
    np.testing.assert_array_equal(largest_remainder_quotas(np.array([10, 0, 30]), 8, np.random.default_rng(0)), [2, 0, 6])


def test_equal_remainders_are_broken_at_random():
    # 50 single-sample bins, k = 10: every bin has remainder 0.2; which ones win depends on the seed
    winners = {tuple(np.flatnonzero(largest_remainder_quotas(np.ones(50, dtype=int), 10, np.random.default_rng(seed)))) for seed in range(5)}
    assert len(winners) == 5
    assert all(len(w) == 10 for w in winners)


def test_quotas_sum_to_k_stay_within_one_of_the_ideal_and_never_exceed_a_bin():
    rng = np.random.default_rng(0)
    for _ in range(500):
        counts = rng.integers(0, rng.choice([2, 30, 1000]), size=rng.integers(1, 60))
        counts[rng.integers(len(counts))] += 1  # at least one sample
        k = int(rng.integers(0, counts.sum() + 1))
        quotas = largest_remainder_quotas(counts, k, rng)
        assert quotas.sum() == k
        assert (np.abs(quotas - k * counts / counts.sum()) < 1).all()
        assert (quotas <= counts).all()


def test_more_samples_than_the_bins_hold_is_an_error():
    with pytest.raises(ConfigError, match="cannot apportion 5"):
        largest_remainder_quotas(np.array([1, 2]), 5, np.random.default_rng(0))


def skewed_entropies() -> np.ndarray:
    """A trained model's pool: most samples confident (low entropy), a long uncertain tail."""
    rng = np.random.default_rng(0)
    return np.concatenate([rng.beta(0.5, 3.0, size=4000), rng.beta(5.0, 2.0, size=1000)]) * np.log(10)


def test_proportional_quota_keeps_the_pool_entropy_histogram():
    entropies = skewed_entropies()
    chosen = dre_positions(entropies, 200, np.random.default_rng(1), quota="proportional")
    assert len(np.unique(chosen)) == 200
    pool_counts = np.bincount(histogram_bins(entropies, 50), minlength=50)
    selected_counts = np.bincount(histogram_bins(entropies, 50)[chosen], minlength=50)
    assert (np.abs(selected_counts - 200 * pool_counts / len(entropies)) < 1).all()
    # the most uncertain end is not over-sampled: compare with what entropy sampling would take
    assert selected_counts[-10:].sum() < 0.3 * 200
    assert abs(entropies[chosen].mean() - entropies.mean()) < 0.05 * entropies.mean()


def test_paper_quota_skews_the_batch_towards_high_entropy():
    entropies = skewed_entropies()
    chosen = dre_positions(entropies, 200, np.random.default_rng(1), quota="paper")
    assert len(np.unique(chosen)) == 200
    bin_of = histogram_bins(entropies, 50)
    pool_counts = np.bincount(bin_of, minlength=50)
    selected_counts = np.bincount(bin_of[chosen], minlength=50)
    # every bin above the cut gets its rounded-up share: at least one sample, at least its ideal share
    assert (selected_counts[pool_counts > 0] >= 1).sum() >= 45
    assert entropies[chosen].mean() > 1.1 * entropies.mean()
    assert selected_counts[25:].sum() > 200 * pool_counts[25:].sum() / len(entropies) + 10


def test_paper_quotas_on_a_hand_made_histogram():
    # shares 4 * (6, 3, 1) / 10 = (2.4, 1.2, 0.4) round up to (3, 2, 1) = 6; the 2 too many are cut
    # from the lowest-entropy bin, as the authors' "keep the last k" does
    np.testing.assert_array_equal(paper_quotas(np.array([6, 3, 1]), 4), [1, 2, 1])
    # the cut can empty a low bin and reach into the next one
    np.testing.assert_array_equal(paper_quotas(np.array([1, 1, 1, 1, 6]), 3), [0, 0, 0, 1, 2])
    # rounded-up shares never exceed a bin; k = N takes everything
    np.testing.assert_array_equal(paper_quotas(np.array([2, 0, 3]), 5), [2, 0, 3])


def test_paper_quotas_sum_to_k_never_exceed_a_bin_and_match_the_authors_rule():
    rng = np.random.default_rng(0)
    for _ in range(500):
        counts = rng.integers(0, rng.choice([2, 30, 1000]), size=rng.integers(1, 60))
        counts[rng.integers(len(counts))] += 1
        k = int(rng.integers(0, counts.sum() + 1))
        quotas = paper_quotas(counts, k)
        assert quotas.sum() == k and (quotas >= 0).all() and (quotas <= counts).all()
        # the authors' rule: ceil shares, concatenated low to high, the last k kept
        shares = np.minimum(np.ceil(k * counts / counts.sum() - 1e-12).astype(int), counts)
        owner = np.repeat(np.arange(len(counts)), shares)
        np.testing.assert_array_equal(np.bincount(owner[len(owner) - k :], minlength=len(counts)), quotas)


def test_unknown_quota_is_a_config_error():
    with pytest.raises(ConfigError, match="quota must be one of paper, proportional"):
        build_acquisition("dre", quota="ceil")


def test_draws_inside_a_bin_are_random_and_follow_the_seed():
    entropies = np.linspace(0.0, 1.0, 1000)
    first = dre_positions(entropies, 50, np.random.default_rng(0))
    np.testing.assert_array_equal(first, dre_positions(entropies, 50, np.random.default_rng(0)))
    assert not np.array_equal(np.sort(first), np.sort(dre_positions(entropies, 50, np.random.default_rng(1))))


@pytest.mark.parametrize(("count", "k"), [(1, 1), (10, 3), (10, 10), (49, 17)])
def test_pools_smaller_than_the_number_of_bins(count, k):
    entropies = np.random.default_rng(count).random(count)
    chosen = dre_positions(entropies, k, np.random.default_rng(0))
    assert sorted(set(chosen.tolist())) == sorted(chosen.tolist()) and len(chosen) == k


def test_all_equal_entropies_give_a_uniform_random_batch():
    chosen = dre_positions(np.zeros(30), 12, np.random.default_rng(0))
    assert len(np.unique(chosen)) == 12 and chosen.max() < 30


def test_end_to_end_from_the_model_output(probability_context):
    rng = np.random.default_rng(3)
    probabilities = torch.from_numpy(rng.dirichlet(np.full(10, 0.3), size=600))
    context = probability_context(probabilities, batch_size=64)
    pool = np.arange(100, 600)
    chosen = build_acquisition("dre", bins=20, quota="proportional").select(context, pool, 37, np.random.default_rng(0))
    pool_entropies = entropy(probabilities[pool].float()).double().numpy()
    bin_of = histogram_bins(pool_entropies, 20)
    pool_counts = np.bincount(bin_of, minlength=20)
    selected_counts = np.bincount(bin_of[np.searchsorted(pool, chosen)], minlength=20)
    assert (np.abs(selected_counts - 37 * pool_counts / len(pool)) < 1).all()


def test_bins_must_be_a_positive_integer():
    with pytest.raises(ConfigError, match="bins must be an integer >= 1"):
        build_acquisition("dre", bins=0)
