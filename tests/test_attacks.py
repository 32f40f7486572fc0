"""Attack invariants: eps-ball, [0, 1], model mode and gradients untouched, PGD >= FGSM."""

import pytest
import torch
import torch.nn.functional as F

from robustal.attacks import FGSM, PGD, TradesKL
from robustal.errors import ConfigError
from robustal.evaluation import evaluate
from robustal.runtime import to_float
from robustal.seeding import torch_generator


@pytest.fixture
def batch(digits):
    return to_float(digits.test.images[:64]), digits.test.labels[:64]


ATTACKS = [
    FGSM(eps=0.1),
    PGD(eps=0.1, step_size=0.02, steps=10),
    PGD(eps=0.1, step_size=0.02, steps=10, random_start=False),
    PGD(eps=1.0, step_size=0.3, steps=5, norm="l2"),
    TradesKL(eps=0.1, step_size=0.02, steps=10),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=repr)
def test_adversarial_examples_stay_in_eps_ball_and_pixel_range(trained_digits_model, batch, attack):
    x, y = batch
    x_adv = attack(trained_digits_model, x, y, torch_generator(0, "t"))
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert not x_adv.requires_grad
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = (x_adv - x).flatten(1)
    norms = delta.abs().amax(1) if attack.__dict__.get("norm", "linf") == "linf" else delta.norm(dim=1)
    assert (norms <= attack.eps + 1e-5).all()
    assert norms.max() > 0.5 * attack.eps  # it did move


@pytest.mark.parametrize("training", [True, False])
def test_attack_restores_mode_and_leaves_parameter_gradients_alone(trained_digits_model, batch, training):
    x, y = batch
    model = trained_digits_model
    model.train(training)
    model.zero_grad(set_to_none=True)
    running_mean = model.features[1].running_mean.clone()
    try:
        PGD(eps=0.1, step_size=0.02, steps=3)(model, x, y)
        assert model.training is training
        assert all(p.grad is None for p in model.parameters())
        # attacks run in eval mode: BatchNorm statistics are not updated
        assert torch.equal(model.features[1].running_mean, running_mean)
    finally:
        model.eval()


def test_pgd_is_at_least_as_strong_as_fgsm_and_attacks_hurt(trained_digits_model, digits):
    model, device = trained_digits_model, torch.device("cpu")
    clean = evaluate(model, digits.test, device).clean_accuracy
    fgsm = evaluate(model, digits.test, device, FGSM(eps=0.1)).robust_accuracy
    pgd = evaluate(model, digits.test, device, PGD(eps=0.1, step_size=0.01, steps=20), torch_generator(0, "p")).robust_accuracy
    assert clean > 0.9
    assert fgsm < clean
    assert pgd <= fgsm


def test_pgd_random_start_is_reproducible_for_a_generator(trained_digits_model, batch):
    x, y = batch
    attack = PGD(eps=0.1, step_size=0.02, steps=2)
    first = attack(trained_digits_model, x, y, torch_generator(3, "a"))
    second = attack(trained_digits_model, x, y, torch_generator(3, "a"))
    other = attack(trained_digits_model, x, y, torch_generator(4, "a"))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_attack_works_inside_inference_mode(trained_digits_model, batch):
    x, y = batch
    with torch.inference_mode():
        x_adv = PGD(eps=0.1, step_size=0.02, steps=2)(trained_digits_model, x.clone(), y)
    assert (x_adv - x).abs().max() > 0


def test_zero_eps_returns_the_input(trained_digits_model, batch):
    x, y = batch
    assert torch.equal(PGD(eps=0.0, step_size=0.01, steps=3)(trained_digits_model, x, y), x)


@pytest.mark.parametrize(
    "make", [lambda: PGD(eps=-0.1), lambda: PGD(step_size=0), lambda: PGD(steps=-1), lambda: PGD(norm="l1"), lambda: FGSM(-1)]
)
def test_invalid_attack_parameters_are_rejected(make):
    with pytest.raises(ConfigError):
        make()


def _kl_to_clean(model, x, x_adv):
    """KL(p(x) || p(x_adv)) per sample, the divergence TRADES's attack ascends."""
    with torch.no_grad():
        clean, adversarial = F.softmax(model(x), 1), F.log_softmax(model(x_adv), 1)
        return (clean * (clean.log() - adversarial)).sum(1)


@pytest.mark.parametrize("norm, eps, step", [("linf", 0.1, 0.02), ("l2", 1.0, 0.3)])
def test_trades_kl_attack_raises_the_kl_within_the_ball(trained_digits_model, batch, norm, eps, step):
    x, y = batch
    start = TradesKL(eps, step, 0, norm)(trained_digits_model, x, y, torch_generator(0, "t"))
    x_adv = TradesKL(eps, step, 10, norm)(trained_digits_model, x, y, torch_generator(0, "t"))
    assert torch.equal(x_adv, TradesKL(eps, step, 10, norm)(trained_digits_model, x, y, torch_generator(0, "t")))
    delta = (x_adv - x).flatten(1)
    norms = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (norms <= eps + 1e-5).all() and x_adv.min() >= 0 and x_adv.max() <= 1
    # the start is x + 0.001 N(0, 1), almost no divergence; the steps find far more than a
    # random point on the ball's surface does (a descent would not: it reaches ~0.002 / ~0.02)
    assert (start - x).abs().max() < 0.01
    generator = torch_generator(1, "random-direction")
    direction = torch.randn(x.shape, generator=generator)
    direction = direction.sign() if norm == "linf" else direction / direction.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    random_point = (x + eps * direction).clamp(0, 1)
    before, after = _kl_to_clean(trained_digits_model, x, start), _kl_to_clean(trained_digits_model, x, x_adv)
    random = _kl_to_clean(trained_digits_model, x, random_point)
    assert before.mean() < 1e-3 and after.mean() > 5 * random.mean()
    assert (after > random).float().mean() > 0.9
