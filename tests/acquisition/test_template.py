"""The template every registered acquisition function must pass (parametrised over the registry,
so a newly registered function is tested without writing anything)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustal.acquisition import PoolContext, available_acquisitions, build_acquisition
from robustal.errors import ConfigError, PoolExhaustedError

ALL = available_acquisitions()
# every function with its default options, plus the non-default variants that select differently
VARIANTS = [(name, {}) for name in ALL] + [
    ("dre", {"quota": "proportional"}),
    ("entropy", {"sampling": "power"}),
    ("margin", {"sampling": "softmax", "beta": 10.0}),
    ("bald", {"sampling": "softrank"}),
]
VARIANT_IDS = [name + "".join(f"-{key}={value}" for key, value in options.items()) for name, options in VARIANTS]


def test_the_twelve_functions_of_the_study_are_registered():
    expected = {
        "random", "entropy", "margin", "least_confidence", "gini", "entropy_dropout",
        "bald", "kcenter", "egl", "dfal", "mcp", "dre",
    }  # fmt: skip
    assert expected <= set(ALL)


def check_selection(chosen: np.ndarray, pool: np.ndarray, labeled: np.ndarray, k: int) -> None:
    assert chosen.shape == (k,)
    assert chosen.dtype == np.int64
    assert len(np.unique(chosen)) == k
    assert np.isin(chosen, pool).all()
    assert not np.isin(chosen, labeled).any()


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("k", [1, 9])
def test_returns_exactly_k_unique_pool_indices(name, options, k, digits_context, pool):
    chosen = build_acquisition(name, **options).select(digits_context, pool, k, np.random.default_rng(0))
    check_selection(chosen, pool, digits_context.labeled_indices, k)


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=VARIANT_IDS)
def test_reproducible_for_a_seed_whatever_the_global_generators(name, options, digits_context, pool):
    acquisition = build_acquisition(name, **options)
    torch.manual_seed(1)
    np.random.seed(1)
    first = acquisition.select(digits_context, pool, 6, np.random.default_rng(42))
    torch.manual_seed(2)
    np.random.seed(2)
    second = acquisition.select(digits_context, pool, 6, np.random.default_rng(42))
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=VARIANT_IDS)
def test_k_equal_to_the_pool_size_takes_the_whole_pool(name, options, digits_context, pool):
    chosen = build_acquisition(name, **options).select(digits_context, pool, len(pool), np.random.default_rng(0))
    check_selection(chosen, pool, digits_context.labeled_indices, len(pool))
    np.testing.assert_array_equal(np.sort(chosen), np.sort(pool))


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=VARIANT_IDS)
def test_k_beyond_the_pool_is_a_clear_error(name, options, digits_context, pool):
    with pytest.raises(PoolExhaustedError, match=f"k={len(pool) + 1}.*only {len(pool)}"):
        build_acquisition(name, **options).select(digits_context, pool, len(pool) + 1, np.random.default_rng(0))


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("k", [0, -1, 2.0])
def test_k_must_be_a_positive_integer(name, options, k, digits_context, pool):
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        build_acquisition(name, **options).select(digits_context, pool, k, np.random.default_rng(0))


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=VARIANT_IDS)
def test_works_on_a_pool_smaller_than_the_dre_bins(name, options, digits_context, pool):
    small_pool = pool[:7]
    for k in (3, 7):
        chosen = build_acquisition(name, **options).select(digits_context, small_pool, k, np.random.default_rng(3))
        check_selection(chosen, small_pool, digits_context.labeled_indices, k)


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=VARIANT_IDS)
def test_works_without_labeled_samples(name, options, digits_context, pool):
    context = PoolContext(digits_context.model, digits_context.images, np.empty(0, dtype=np.int64), digits_context.device, 16)
    chosen = build_acquisition(name, **options).select(context, pool, 5, np.random.default_rng(0))
    check_selection(chosen, pool, np.empty(0), 5)


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=VARIANT_IDS)
def test_leaves_the_model_as_it_found_it(name, options, digits_context, pool):
    model = digits_context.model.train()  # BatchNorm would update its statistics in train mode
    before = {key: value.clone() for key, value in model.state_dict().items()}
    build_acquisition(name, **options).select(digits_context, pool, 5, np.random.default_rng(0))
    assert model.training
    assert all(module.training for module in model.modules())
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    assert all(parameter.grad is None for parameter in model.parameters())
    assert not any(module._forward_hooks or module._forward_pre_hooks for module in model.modules())


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=VARIANT_IDS)
def test_unknown_option_is_a_config_error(name, options):
    with pytest.raises(ConfigError, match=f"invalid options for acquisition '{name}'"):
        build_acquisition(name, **options, no_such_option=1)
