"""Stochastic batch acquisition (power, softmax, softrank): the draw's distribution, validation,
and that the default (top-k) changes neither the selection nor a run's id."""

from __future__ import annotations

import numpy as np
import pytest

from robustal.acquisition import build_acquisition, top_k
from robustal.acquisition.batch_sampling import batch_positions
from robustal.acquisition.scoring import entropy, predict_probabilities
from robustal.config import make_config
from robustal.errors import ConfigError

SCORES = np.array([0.5, 2.0, 1.0, 0.0])


@pytest.mark.parametrize(
    ("sampling", "beta", "weights"),
    [
        ("power", 1.0, SCORES),
        ("power", 2.0, SCORES**2),
        ("softmax", 1.0, np.exp(SCORES)),
        ("softmax", 0.5, np.exp(0.5 * SCORES)),
        ("softrank", 1.0, 1.0 / np.array([3.0, 1.0, 2.0, 4.0])),  # ranks: 2.0 first, 0.0 last
    ],
)
def test_first_draw_follows_the_rules_weights(sampling, beta, weights):
    rng = np.random.default_rng(0)
    firsts = [batch_positions(SCORES, 1, rng, sampling, beta)[0] for _ in range(4000)]
    frequencies = np.bincount(firsts, minlength=4) / 4000
    np.testing.assert_allclose(frequencies, weights / weights.sum(), atol=0.025)


def test_second_draw_is_without_replacement():
    rng = np.random.default_rng(1)
    pairs = [tuple(batch_positions(SCORES[:3], 2, rng, "power")) for _ in range(4000)]
    weights = SCORES[:3] / SCORES[:3].sum()
    # P(1 then 2) = w1 * w2 / (1 - w1)
    assert pairs.count((1, 2)) / 4000 == pytest.approx(weights[1] * weights[2] / (1 - weights[1]), abs=0.025)
    assert all(len(set(pair)) == 2 for pair in pairs)


def test_power_puts_zero_scores_last_and_refuses_negative_scores():
    chosen = batch_positions(np.array([0.0, 1.0, 0.0, 3.0]), 4, np.random.default_rng(0), "power")
    assert sorted(chosen[:2].tolist()) == [1, 3] and chosen[2:].tolist() == [0, 2]
    with pytest.raises(ConfigError, match="power needs scores >= 0.*softmax or softrank"):
        batch_positions(np.array([-0.1, 1.0]), 1, np.random.default_rng(0), "power", owner="margin")


def test_top_draws_nothing_and_keeps_the_top_k():
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(batch_positions(SCORES, 2, rng, "top"), [1, 2])
    assert rng.random() == np.random.default_rng(0).random()


def test_a_very_cold_softmax_is_the_top_k(digits_context, pool):
    scores = entropy(predict_probabilities(digits_context, pool))
    chosen = build_acquisition("entropy", sampling="softmax", beta=1e6).select(digits_context, pool, 8, np.random.default_rng(0))
    np.testing.assert_array_equal(chosen, pool[top_k(scores.numpy(), 8)])


def test_sampling_depends_on_the_seed(digits_context, pool):
    acquisition = build_acquisition("entropy", sampling="softrank")
    draws = {tuple(acquisition.select(digits_context, pool, 5, np.random.default_rng(seed))) for seed in range(5)}
    assert len(draws) > 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sampling": "gumbel"}, "valid choices: power, softmax, softrank, top"),
        ({"sampling": "power", "beta": 0}, "beta must be a number in"),
        ({"sampling": "power", "beta": 1e7}, "beta must be a number in"),
        ({"beta": 2.0}, "beta only applies to sampling power, softmax or softrank"),
    ],
)
def test_options_are_validated(options, message):
    with pytest.raises(ConfigError, match=message):
        build_acquisition("bald", **options)


def test_the_default_leaves_run_ids_unchanged():
    plain = make_config(dataset="digits", acquisition="entropy").run_id()
    assert make_config(dataset="digits", acquisition="entropy", acquisition_options={"sampling": "top"}).run_id() == plain
    power = make_config(dataset="digits", acquisition="entropy", acquisition_options={"sampling": "power"}).run_id()
    assert power != plain
    same = make_config(dataset="digits", acquisition="entropy", acquisition_options={"sampling": "power", "beta": 1.0})
    assert same.run_id() == power
    hotter = make_config(dataset="digits", acquisition="entropy", acquisition_options={"sampling": "power", "beta": 0.5})
    assert hotter.run_id() != power
