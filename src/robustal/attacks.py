"""Batched adversarial attacks on models that return logits, for inputs in [0, 1].

FGSM, PGD (L-inf, L2) and TRADES's KL attack (`TradesKL`, the inner maximisation of TRADES
training).

Every attack is a small object holding its parameters (paper defaults) with one call:
``attack(model, x, y, generator=None) -> x_adv``. An attack

- runs the model in eval mode and restores the mode it found;
- takes gradients with respect to the input only (``torch.autograd.grad``), so it never
  accumulates gradients in the model's parameters (nor computes them);
- runs in the enclosing execution (`robustal.accel.Execution.context()`): forward passes at its
  precision (under bf16 the input, the loss, from float32 logits, and the perturbation stay
  float32), on its attack view of the model (BatchNorm folded, fused CPU kernels: the same
  function up to float rounding), PGD's steps replayed as a CUDA graph where it asks for them;
- never synchronises with the host inside its loop (no ``.item()``, no ``.cpu()``);
- returns a detached tensor in [0, 1] within the eps-ball of `x`.

An attack holds only what defines it (radius, step, steps, norm, random start); how it
executes is the execution's business.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

from robustal.accel import current_execution
from robustal.errors import ConfigError, unknown_name_error
from robustal.runtime import model_mode

NORMS = ("linf", "l2")


def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of the summed cross-entropy with respect to `x` alone."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x).float(), y, reduction="sum")
    (gradient,) = torch.autograd.grad(loss, x)
    return gradient


def _l2_normalise(v: torch.Tensor) -> torch.Tensor:
    norms = v.flatten(1).norm(dim=1).clamp_min(1e-12)
    return v / norms.view(-1, *([1] * (v.ndim - 1)))


class Attack(ABC):
    """Base class: validates nothing itself, handles model mode, gradient context, attack view."""

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Adversarial examples for inputs `x` (float, [0, 1]) with true labels `y`."""
        with model_mode(model, training=False), torch.inference_mode(False), torch.enable_grad():
            x_adv = self.perturb(current_execution().attack_view(model), x.detach(), y, generator)
        return x_adv.detach()

    @abstractmethod
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The attack proper (model already in eval mode, gradients enabled)."""


class FGSM(Attack):
    """Fast gradient sign method (Goodfellow et al., 2015): one L-inf step of size eps."""

    def __init__(self, eps: float = 0.3) -> None:
        if eps < 0:
            raise ConfigError(f"eps must be >= 0, got {eps}")
        self.eps = eps

    def perturb(self, model, x, y, generator):
        return (x + self.eps * _input_gradient(model, x, y).sign()).clamp_(0.0, 1.0)

    def __repr__(self) -> str:
        return f"FGSM(eps={self.eps})"


class PGD(Attack):
    """Projected gradient descent (Madry et al., 2018), L-inf or L2.

    Defaults are the paper's MNIST training attack: eps 0.3, step 0.01, 40 steps, random start.
    """

    def __init__(
        self,
        eps: float = 0.3,
        step_size: float = 0.01,
        steps: int = 40,
        random_start: bool = True,
        norm: str = "linf",
    ) -> None:
        if eps < 0:
            raise ConfigError(f"eps must be >= 0, got {eps}")
        if step_size <= 0:
            raise ConfigError(f"PGD step size must be > 0, got {step_size}")
        if steps < 0:
            raise ConfigError(f"PGD steps must be >= 0, got {steps}")
        if norm not in NORMS:
            raise unknown_name_error("norm", norm, NORMS)
        self.eps, self.step_size, self.steps, self.random_start, self.norm = eps, step_size, steps, random_start, norm

    def _random_start(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if self.norm == "linf":
            return (2 * noise - 1) * self.eps
        # uniform direction, radius uniform in [0, eps]
        direction = _l2_normalise(torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype))
        radius = noise.flatten(1)[:, :1].view(-1, *([1] * (x.ndim - 1)))
        return direction * radius * self.eps

    def _project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        delta = x_adv - x
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        else:
            norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
            factor = (self.eps / norms).clamp(max=1.0)
            delta = delta * factor.view(-1, *([1] * (x.ndim - 1)))
        return (x + delta).clamp_(0.0, 1.0)

    def perturb(self, model, x, y, generator):
        x_adv = x.clone()
        if self.random_start and self.eps > 0:
            x_adv = self._project(x + self._random_start(x, generator), x)
        if self.steps == 0:
            return x_adv
        # the steps use no randomness: the execution may replay them as a captured CUDA graph
        key = ("pgd", self.eps, self.step_size, self.steps, self.norm)
        return current_execution().replay(model, key, functools.partial(self._steps, model), x, x_adv, y)

    def _gradient(self, model: nn.Module, x_adv: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The input gradient of the loss the steps ascend (PGD: the summed cross-entropy of labels `target`)."""
        return _input_gradient(model, x_adv, target)

    def _steps(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        for _ in range(self.steps):
            gradient = self._gradient(model, x_adv, target)
            step = gradient.sign() if self.norm == "linf" else _l2_normalise(gradient)
            x_adv = self._project(x_adv + self.step_size * step, x)
        return x_adv

    def __repr__(self) -> str:
        return (
            f"PGD(eps={self.eps}, step_size={self.step_size}, steps={self.steps}, "
            f"random_start={self.random_start}, norm={self.norm!r})"
        )


class TradesKL(PGD):
    """TRADES's inner maximisation (Zhang et al., ICML 2019), as their reference code ``trades.py``.

    Starts at ``x + 0.001 * N(0, 1)`` (seeded by `generator`) and takes `steps` steps that
    ascend ``KL(p(x) || p(x_adv)) = sum p(x) * (log p(x) - log p(x_adv))`` summed over the batch
    (their ``KLDivLoss(size_average=False)(log_softmax(model(x_adv)), softmax(model(x)))``), with
    ``p`` the model's softmax in eval mode. L-inf: sign steps of `step_size`, projected onto the
    eps-ball and [0, 1] after each step, exactly as their ``l_inf`` branch. L2: PGD's L2 steps
    (normalised gradient times `step_size`, then projection), where their ``l_2`` branch runs
    SGD at rate ``2 * eps / steps`` on the normalised gradient: the run's step size is used
    instead, as for PGD. The labels `y` are not used.
    """

    def __init__(self, eps: float = 0.3, step_size: float = 0.01, steps: int = 40, norm: str = "linf") -> None:
        super().__init__(eps, step_size, steps, random_start=True, norm=norm)

    def perturb(self, model, x, y, generator):
        with torch.no_grad():
            natural = F.softmax(model(x).float(), dim=1)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_adv = x + 0.001 * noise  # not projected before the first step, as in their code
        if self.steps > 0:
            key = ("trades-kl", self.eps, self.step_size, self.steps, self.norm)
            x_adv = current_execution().replay(model, key, functools.partial(self._steps, model), x, x_adv, natural)
        return self._project(x_adv, x)  # a no-op after any step; with none, the ball and [0, 1]

    def _gradient(self, model, x_adv, natural):
        x_adv = x_adv.detach().requires_grad_(True)
        divergence = F.kl_div(F.log_softmax(model(x_adv).float(), dim=1), natural, reduction="sum")
        (gradient,) = torch.autograd.grad(divergence, x_adv)
        return gradient

    def __repr__(self) -> str:
        return f"TradesKL(eps={self.eps}, step_size={self.step_size}, steps={self.steps}, norm={self.norm!r})"
