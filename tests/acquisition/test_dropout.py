"""MC dropout by forward hooks: BatchNorm untouched, hooks removed, seeded, T passes differ."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from robustal.acquisition import build_acquisition
from robustal.acquisition.dropout import bald_scores, dropout_sites, entropy_dropout_scores, mc_dropout, mc_dropout_outputs
from robustal.acquisition.scoring import entropy, predict_probabilities
from robustal.errors import ConfigError
from robustal.models import Classifier


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def passes_per_sample(context, indices, seed, rate=0.1, passes=10) -> torch.Tensor:
    """(n, passes, classes): the softmax of every pass, per sample."""
    return mc_dropout_outputs(context, indices, lambda p: p.transpose(0, 1), generator(seed), rate, passes)


def no_hooks(model: nn.Module) -> bool:
    return not any(module._forward_hooks for module in model.modules())


def test_passes_differ_and_are_reproducible_for_a_seed(digits_context, pool):
    outputs = passes_per_sample(digits_context, pool, seed=0)
    assert outputs.shape == (len(pool), 10, 10)
    np.testing.assert_allclose(outputs.sum(dim=2), 1.0, atol=1e-5)
    # every pass differs from the first for most samples
    differs = (outputs - outputs[:, :1]).abs().amax(dim=2) > 1e-6
    assert differs[:, 1:].float().mean() > 0.9
    assert torch.equal(outputs, passes_per_sample(digits_context, pool, seed=0))
    assert not torch.equal(outputs, passes_per_sample(digits_context, pool, seed=1))


def test_rate_zero_gives_the_deterministic_prediction(digits_context, pool):
    outputs = passes_per_sample(digits_context, pool, seed=0, rate=0.0, passes=3)
    expected = predict_probabilities(digits_context, pool)
    for t in range(3):
        torch.testing.assert_close(outputs[:, t], expected)


def test_batchnorm_stays_in_eval_mode_and_the_model_mode_is_restored(digits_context, pool):
    model = digits_context.model.train()
    batchnorms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    assert batchnorms
    seen_training: list[bool] = []
    probe = batchnorms[0].register_forward_hook(lambda module, inputs, output: seen_training.append(module.training))
    statistics = [(bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked)) for bn in batchnorms]
    try:
        passes_per_sample(digits_context, pool, seed=0)
    finally:
        probe.remove()
    assert seen_training and not any(seen_training)
    assert model.training and all(module.training for module in model.modules())
    for bn, (mean, var, tracked) in zip(batchnorms, statistics):
        assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
        assert int(bn.num_batches_tracked) == tracked
    assert no_hooks(model)


def test_hooks_are_removed_even_on_error(digits_context, pool):
    def failing(pass_probabilities):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        mc_dropout_outputs(digits_context, pool, failing, generator(0))
    assert no_hooks(digits_context.model)


def test_the_model_is_not_copied_and_hooks_sit_on_every_activation(digits_context):
    model = digits_context.model
    activations = [module for module in model.modules() if isinstance(module, nn.ReLU)]
    assert dropout_sites(model) == activations
    with mc_dropout(model, 0.1, generator(0)) as inside:
        assert inside is model
        assert all(len(module._forward_hooks) == 1 for module in activations)
    assert no_hooks(model)


def test_dropout_zeroes_the_rate_and_rescales_the_rest():
    model = Classifier(nn.Sequential(nn.Flatten(), nn.ReLU()), nn.Linear(4, 2))
    with mc_dropout(model, 0.25, generator(0)), torch.no_grad():
        out = model.embed(torch.ones(50_000, 4))
    torch.testing.assert_close(torch.unique(out), torch.tensor([0.0, 1 / 0.75]))
    assert abs((out == 0).float().mean().item() - 0.25) < 0.01


def test_a_model_without_activation_modules_gets_dropout_on_its_embedding():
    model = Classifier(nn.Flatten(), nn.Linear(4, 2))
    assert dropout_sites(model) == [model.features]
    with mc_dropout(model, 0.5, generator(0)), torch.no_grad():
        out = model.embed(torch.ones(1000, 4))
    assert (out == 0).any() and (out == 2).any()


@pytest.mark.parametrize("options", [{"dropout_rate": 1.0}, {"dropout_rate": -0.1}, {"passes": 0}])
@pytest.mark.parametrize("name", ["bald", "entropy_dropout"])
def test_invalid_options_are_config_errors(name, options):
    with pytest.raises(ConfigError):
        build_acquisition(name, **options)


def test_bald_and_entropy_dropout_on_hand_made_passes():
    agreeing = torch.tensor([[[0.7, 0.3]], [[0.7, 0.3]]], dtype=torch.float64)  # (T=2, n=1, 2)
    disagreeing = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]], dtype=torch.float64)
    uncertain = torch.tensor([[[0.5, 0.5]], [[0.5, 0.5]]], dtype=torch.float64)
    passes = torch.cat([agreeing, disagreeing, uncertain], dim=1)
    np.testing.assert_allclose(entropy_dropout_scores(passes), [entropy(torch.tensor([0.7, 0.3])).item(), math.log(2), math.log(2)], rtol=1e-6)
    # BALD: no disagreement -> 0; confident but contradicting passes -> log 2; shared uncertainty -> 0
    np.testing.assert_allclose(bald_scores(passes), [0.0, math.log(2), 0.0], atol=1e-9)


def test_without_dropout_entropy_dropout_is_entropy_and_bald_is_zero(digits_context, pool):
    rng = np.random.default_rng
    entropy_choice = build_acquisition("entropy").select(digits_context, pool, 8, rng(0))
    dropout_choice = build_acquisition("entropy_dropout", dropout_rate=0.0, passes=2).select(digits_context, pool, 8, rng(0))
    np.testing.assert_array_equal(dropout_choice, entropy_choice)
    bald = build_acquisition("bald", dropout_rate=0.0, passes=3)
    np.testing.assert_allclose(bald.scores(digits_context, pool, rng(0)), 0.0, atol=1e-6)
