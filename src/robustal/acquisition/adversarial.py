"""Gradient-based acquisition: DeepFool adversarial margins (dfal) and expected gradient
length (egl), both batched over the pool with per-sample input gradients.

The model runs in eval mode, so the samples of a batch do not interact and the gradient of a
summed quantity with respect to the batch holds each sample's own gradient; gradients are
taken with respect to the input only (``torch.autograd.grad``), never accumulated in the
model's parameters.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from robustal.acquisition.base import AcquisitionFunction, ScoreAcquisition, check_positive_int, top_k
from robustal.acquisition.registry import register_acquisition
from robustal.acquisition.scoring import softmax, stream_batches
from robustal.attacks import Attack
from robustal.errors import ConfigError

DEEPFOOL_OVERSHOOT = 0.02
DEEPFOOL_STEPS = 50
DFAL_SUBSET_FACTOR = 10
MIN_STEP = 1e-4  # added to each DeepFool step, as in the authors' reference implementation


def logit_jacobian(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (n, C) of `x` and their per-sample input gradients J (n, C, d), J[i, c] = d f_c(x_i) / d x_i.

    One backward pass per class (C in all), each over the whole batch; `x` is flattened to d features.
    """
    x = x.detach().requires_grad_(True)
    logits = model(x)
    classes = logits.shape[1]
    rows = [torch.autograd.grad(logits[:, c].sum(), x, retain_graph=c < classes - 1)[0] for c in range(classes)]
    return logits.detach(), torch.stack(rows, dim=1).flatten(2)


def expected_gradient_lengths(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """EGL(x) = sum_c p_c(x) || d/dx CE(f(x), c) ||_2 for every sample of the batch `x` -> (n,).

    With J the logit Jacobian, d/dx CE(f(x), c) = J^T p - J_c (the softmax cross-entropy
    gradient), so all C label gradients come from C backward passes. Needs gradients enabled.
    """
    logits, jacobian = logit_jacobian(model, x)
    probabilities = softmax(logits)
    expected_row = torch.einsum("nc,ncd->nd", probabilities, jacobian)
    label_gradient_norms = (expected_row[:, None, :] - jacobian).norm(dim=2)
    return (probabilities * label_gradient_norms).sum(dim=1)


class DeepFool(Attack):
    """Multi-class DeepFool, L2 (Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016, Algorithm 2), batched.

    For each sample with original label l, while the prediction is still l (at most `steps`
    iterations), with f'_c = f_c - f_l and w'_c = grad f_c - grad f_l at the current point:
    c* = argmin_{c != l} |f'_c| / ||w'_c||, r += (|f'_c*| / ||w'_c*|| + 1e-4) w'_c* / ||w'_c*||,
    and x_adv = clip(x + (1 + overshoot) r, 0, 1). Samples leave the batch once fooled. `y` is
    the label to move away from (DeepFool's original uses the model's prediction).
    Defaults: overshoot 0.02, 50 steps.
    """

    def __init__(self, overshoot: float = DEEPFOOL_OVERSHOOT, steps: int = DEEPFOOL_STEPS) -> None:
        if overshoot < 0:
            raise ConfigError(f"DeepFool overshoot must be >= 0, got {overshoot}")
        self.overshoot = float(overshoot)
        self.steps = check_positive_int("DeepFool", "steps", steps)

    def perturb(self, model, x, y, generator):
        x_adv = x.clone()
        total_step = torch.zeros_like(x).flatten(1)
        active = torch.arange(len(x), device=x.device)
        for _ in range(self.steps):
            logits, jacobian = logit_jacobian(model, x_adv[active])
            unfooled = logits.argmax(dim=1) == y[active]
            active, logits, jacobian = active[unfooled], logits[unfooled], jacobian[unfooled]
            if len(active) == 0:
                break
            rows = torch.arange(len(active), device=x.device)
            label = y[active]
            logit_gaps = (logits - logits[rows, label][:, None]).abs()
            directions = jacobian - jacobian[rows, label][:, None, :]
            direction_norms = directions.norm(dim=2).clamp_min(1e-12)
            distances = logit_gaps / direction_norms
            distances[rows, label] = float("inf")
            nearest = distances.argmin(dim=1)
            unit = directions[rows, nearest] / direction_norms[rows, nearest][:, None]
            total_step[active] += (distances[rows, nearest] + MIN_STEP)[:, None] * unit
            x_adv[active] = (x[active] + (1.0 + self.overshoot) * total_step[active].view_as(x[active])).clamp(0.0, 1.0)
        return x_adv

    def __repr__(self) -> str:
        return f"DeepFool(overshoot={self.overshoot}, steps={self.steps})"


def deepfool_perturbation_norms(model: nn.Module, x: torch.Tensor, attack: DeepFool) -> torch.Tensor:
    """||x_adv - x||_2 of the DeepFool example that changes each sample's prediction (n,);
    +inf where `attack` does not change it within its steps."""
    with torch.no_grad():
        predictions = model(x).argmax(dim=1)
    x_adv = attack(model, x, predictions)
    with torch.no_grad():
        fooled = model(x_adv).argmax(dim=1) != predictions
    norms = (x_adv - x).flatten(1).norm(dim=1)
    return torch.where(fooled, norms, torch.full_like(norms, float("inf")))


@register_acquisition
class ExpectedGradientLength(ScoreAcquisition):
    """Expected gradient length: highest sum_c p_c(x) || grad_x CE(f(x), c) ||_2, the expected
    norm of the loss gradient over the model's own label distribution (Settles, Craven & Ray,
    NIPS 2008; Huang et al., 2016). As in the robust AL paper's code the gradient is taken with
    respect to the input, not the parameters. Batched: C backward passes per batch.
    """

    name = "egl"

    def scores(self, context, pool, rng):
        return stream_batches(context, pool, lambda x: expected_gradient_lengths(context.model, x), gradients=True).numpy()


@register_acquisition
class DeepFoolActiveLearning(AcquisitionFunction):
    """DFAL: the samples closest to the decision boundary, measured by the L2 norm of their
    minimal DeepFool perturbation (Ducoffe & Precioso, "Adversarial Active Learning for Deep
    Networks: a Margin Based Approach", 2018), smallest first.

    DeepFool runs on a random subset of the pool: `subset_size` samples, by default 10 k (the
    paper's code: ``min(10 * k, pool size)``), never fewer than k. Samples DeepFool cannot fool
    within `steps` count as infinitely far. Options: `subset_size`, `overshoot` (0.02), `steps` (50).
    """

    name = "dfal"

    def __init__(self, subset_size: int | None = None, overshoot: float = DEEPFOOL_OVERSHOOT, steps: int = DEEPFOOL_STEPS) -> None:
        self.subset_size = None if subset_size is None else check_positive_int(self.name, "subset_size", subset_size)
        self.attack = DeepFool(overshoot, steps)

    def _select(self, context, pool, k, rng):
        wanted = DFAL_SUBSET_FACTOR * k if self.subset_size is None else self.subset_size
        subset = np.sort(rng.choice(len(pool), size=min(len(pool), max(k, wanted)), replace=False))
        norms = stream_batches(
            context, pool[subset], lambda x: deepfool_perturbation_norms(context.model, x, self.attack), gradients=True
        )
        return pool[subset[top_k(-norms.double().numpy(), k)]]
