"""DeepFool, dfal and egl against analytic answers (linear models) and per-sample references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustal.acquisition import PoolContext, build_acquisition
from robustal.acquisition.adversarial import DeepFool, deepfool_perturbation_norms, expected_gradient_lengths, logit_jacobian
from robustal.acquisition.scoring import stream_batches
from robustal.errors import ConfigError
from robustal.models import Classifier

PIXELS = 16


def linear_model(seed: int = 0, classes: int = 5) -> Classifier:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Classifier(nn.Flatten(), nn.Linear(PIXELS, classes)).eval()


def boundary_distances(model: Classifier, x: torch.Tensor) -> torch.Tensor:
    """Exact L2 distance from each x to the nearest decision boundary of a linear classifier."""
    weight, bias = model.head.weight.detach(), model.head.bias.detach()
    logits = x.flatten(1) @ weight.T + bias
    label = logits.argmax(dim=1)
    gaps = logits.gather(1, label[:, None]) - logits  # (n, C), >= 0
    directions = (weight[label][:, None, :] - weight[None, :, :]).norm(dim=2)
    distances = gaps / directions
    distances[torch.arange(len(x)), label] = float("inf")
    return distances.min(dim=1).values


def mid_range_inputs(count: int, seed: int = 0) -> torch.Tensor:
    """Inputs in [0.4, 0.6]: far enough from 0 and 1 that clipping never matters here."""
    return 0.4 + 0.2 * torch.rand(count, 1, 4, 4, generator=torch.Generator().manual_seed(seed))


def test_logit_jacobian_matches_the_weights_of_a_linear_model():
    model = linear_model()
    x = mid_range_inputs(6)
    logits, jacobian = logit_jacobian(model, x)
    assert jacobian.shape == (6, 5, PIXELS)
    torch.testing.assert_close(logits, model(x).detach())
    torch.testing.assert_close(jacobian, model.head.weight.detach().expand(6, -1, -1))


def test_deepfool_finds_the_exact_boundary_distance_of_a_linear_model():
    model = linear_model()
    x = mid_range_inputs(40)
    norms = deepfool_perturbation_norms(model, x, DeepFool(overshoot=0.02, steps=50))
    expected = 1.02 * (boundary_distances(model, x) + 1e-4)  # one step, scaled by the overshoot
    torch.testing.assert_close(norms, expected, rtol=1e-4, atol=1e-6)


def test_deepfool_changes_the_prediction_and_stays_in_the_unit_box(digits):
    model = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU()), nn.Linear(32, 10))
    x = digits.train.images[:50].float() / 255
    predictions = model(x).argmax(dim=1)
    x_adv = DeepFool()(model, x, predictions)
    assert not x_adv.requires_grad
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (model(x_adv).argmax(dim=1) != predictions).float().mean() > 0.9


def test_a_sample_deepfool_cannot_fool_is_infinitely_far():
    model = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, 3)), nn.Linear(3, 4))
    with torch.no_grad():
        model.features[1].weight.zero_()  # the output no longer depends on the input
    norms = deepfool_perturbation_norms(model, mid_range_inputs(5), DeepFool(steps=3))
    assert torch.isinf(norms).all()


def uint8_context(model: Classifier, count: int = 120, batch_size: int = 16) -> PoolContext:
    images = torch.randint(90, 166, (count, 1, 4, 4), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    return PoolContext(model, images, np.arange(0, count, 6), torch.device("cpu"), batch_size)


def test_dfal_selects_the_samples_closest_to_the_boundary():
    model = linear_model(seed=3)
    context = uint8_context(model)
    pool = np.setdiff1d(np.arange(120), context.labeled_indices)
    chosen = build_acquisition("dfal", subset_size=len(pool)).select(context, pool, 7, np.random.default_rng(0))
    distances = boundary_distances(model, context.images[pool].float() / 255).numpy()
    np.testing.assert_array_equal(chosen, pool[np.argsort(distances)[:7]])


def test_dfal_works_on_a_random_subset_of_ten_k_by_default():
    context = uint8_context(linear_model(seed=3))
    pool = np.setdiff1d(np.arange(120), context.labeled_indices)
    default = build_acquisition("dfal").select(context, pool, 4, np.random.default_rng(5))
    np.testing.assert_array_equal(default, build_acquisition("dfal", subset_size=40).select(context, pool, 4, np.random.default_rng(5)))
    assert not np.array_equal(default, build_acquisition("dfal", subset_size=len(pool)).select(context, pool, 4, np.random.default_rng(5)))


def reference_egl(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One sample and one label at a time: sum_c p_c ||grad_x CE(f(x), c)||."""
    scores = []
    for sample in x:
        sample = sample[None].clone().requires_grad_(True)
        logits = model(sample)
        probabilities = torch.softmax(logits, dim=1)[0].detach()
        total = 0.0
        for label in range(logits.shape[1]):
            (gradient,) = torch.autograd.grad(F.cross_entropy(logits, torch.tensor([label])), sample, retain_graph=True)
            total += probabilities[label] * gradient.norm()
        scores.append(total)
    return torch.stack(scores)


def test_egl_batched_equals_one_sample_at_a_time(digits_context, pool):
    model = digits_context.model.eval()
    x = digits_context.images[pool[:20]].float() / 255
    torch.testing.assert_close(expected_gradient_lengths(model, x), reference_egl(model, x), rtol=1e-4, atol=1e-7)


def test_egl_selects_the_highest_expected_gradient_length(digits_context, pool):
    model = digits_context.model
    chosen = build_acquisition("egl").select(digits_context, pool, 5, np.random.default_rng(0))
    images = digits_context.images[torch.as_tensor(pool)].float() / 255
    with torch.enable_grad():
        scores = reference_egl(model.eval(), images).numpy()
    np.testing.assert_array_equal(chosen, pool[np.argsort(-scores, kind="stable")[:5]])


def test_gradient_scores_stream_in_batches_without_touching_parameter_gradients(digits_context, pool):
    scores = stream_batches(digits_context, pool, lambda x: expected_gradient_lengths(digits_context.model, x), gradients=True)
    assert scores.shape == (len(pool),) and torch.isfinite(scores).all() and (scores > 0).all()
    assert all(parameter.grad is None for parameter in digits_context.model.parameters())


@pytest.mark.parametrize("options", [{"subset_size": 0}, {"overshoot": -0.1}, {"steps": 0}])
def test_invalid_dfal_options_are_config_errors(options):
    with pytest.raises(ConfigError):
        build_acquisition("dfal", **options)
