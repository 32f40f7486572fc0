"""One training loop with a pluggable step (the regime): standard, PGD adversarial or TRADES training.

The loop trains for a number of epochs, scores the model on the validation split after each
epoch and keeps the best epoch's weights (the paper's model selection). It never waits for the
device inside an epoch (no ``.item()``): the only host synchronisation is the epoch's score.
"""

from __future__ import annotations

import copy
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from robustal.accel import Execution
from robustal.attacks import PGD, Attack, TradesKL
from robustal.data.augment import augment
from robustal.data.dataset import Split
from robustal.errors import ConfigError, unknown_name_error
from robustal.runtime import batch_slices, model_mode, to_float
from robustal.seeding import torch_generator


class TrainingRegime(ABC):
    """How one batch turns into a loss. ``adversarial`` regimes select epochs by robustness."""

    name: str
    adversarial: bool

    @abstractmethod
    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The training loss of batch (x, y), float32; called with the model in train mode and in
        the run's execution context (`robustal.accel.Execution.context`)."""


class StandardTraining(TrainingRegime):
    """Plain empirical risk minimisation on clean inputs."""

    name = "standard"
    adversarial = False

    def loss(self, model, x, y, generator):
        return F.cross_entropy(model(x).float(), y)


class PGDTraining(TrainingRegime):
    """Madry et al. adversarial training: the loss on PGD examples of the batch."""

    name = "pgd"
    adversarial = True

    def __init__(self, attack: Attack) -> None:
        self.attack = attack

    def loss(self, model, x, y, generator):
        x_adv = self.attack(model, x, y, generator)
        return F.cross_entropy(model(x_adv).float(), y)


class TRADESTraining(TrainingRegime):
    """TRADES (Zhang et al., ICML 2019), as their reference code ``trades.py``: the loss
    ``CE(model(x), y) + beta * KL(p(x) || p(x_adv)) / batch size`` (KL summed over the batch,
    ``p`` the softmax, gradients through both terms), with ``x_adv`` from `attack` (`TradesKL`,
    run in eval mode; the loss in train mode)."""

    name = "trades"
    adversarial = True

    def __init__(self, attack: Attack, beta: float = 6.0) -> None:
        self.attack, self.beta = attack, beta

    def loss(self, model, x, y, generator):
        x_adv = self.attack(model, x, y, generator)
        # two clean forward passes as their code (`model(x_natural)` for each term): the same
        # outputs without dropout, and the same BatchNorm running-statistics updates
        natural_loss = F.cross_entropy(model(x).float(), y)
        log_adversarial = F.log_softmax(model(x_adv).float(), dim=1)
        natural = F.softmax(model(x).float(), dim=1)
        divergence = F.kl_div(log_adversarial, natural, reduction="sum") / len(x)
        return natural_loss + self.beta * divergence


TRAINING_REGIMES = ("standard", "pgd", "trades")
TRADES_BETA = 6.0  # Zhang et al.'s default: the trade-off that their CIFAR-10 and MNIST results use


def build_regime(name: str, attack: PGD | None = None, trades_beta: float = TRADES_BETA) -> TrainingRegime:
    """The regime `name`; ``pgd`` and ``trades`` need the training `attack`, whose radius, step,
    steps and norm TRADES's KL attack takes; `trades_beta` weighs TRADES's KL term."""
    if name == "standard":
        return StandardTraining()
    if name not in ("pgd", "trades"):
        raise unknown_name_error("training regime", name, TRAINING_REGIMES)
    if attack is None:
        raise ConfigError(f"the {name} training regime needs a training attack")
    if name == "pgd":
        return PGDTraining(attack)
    return TRADESTraining(TradesKL(attack.eps, attack.step_size, attack.steps, attack.norm), trades_beta)


OPTIMIZERS = ("adam", "sgd")


def make_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam (the paper's MNIST setting) or SGD with momentum 0.9."""
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise unknown_name_error("optimizer", name, OPTIMIZERS)


LR_SCHEDULES = ("constant", "cyclic")


def make_scheduler(
    name: str, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-batch learning-rate schedule: ``constant`` (None) or ``cyclic``.

    ``cyclic`` (Wong et al., 2020; the paper's CIFAR-10 setting) rises linearly from 0 to the
    optimizer's lr over the first 2/5 of the steps, then falls linearly back to 0.
    """
    if name == "constant":
        return None
    if name == "cyclic":
        peak = max(1, int(total_steps * 2 / 5))

        def factor(step: int) -> float:
            if step < peak:
                return (step + 1) / peak
            return max(0.0, (total_steps - step) / max(1, total_steps - peak))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    raise unknown_name_error("learning-rate schedule", name, LR_SCHEDULES)


@dataclass
class TrainingPlan:
    """How a model trains: regime, epochs, batches, optimizer, and the validation score that
    picks the kept epoch (the loop's `retrain_from_scratch` and the first round's `warm_up`
    regime and score included)."""

    regime: TrainingRegime
    score: Callable[[nn.Module], float]
    epochs: int = 10
    batch_size: int = 100
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    retrain_from_scratch: bool = False
    augment: bool = False  # random crop + flip of training batches (SVHN, CIFAR-10 as the paper)
    # the first fit (the random initial set) with another regime and score: the paper's standard warm-up
    warm_up: TrainingRegime | None = None
    warm_up_score: Callable[[nn.Module], float] | None = None


@dataclass
class FitResult:
    """What one call of `fit` did: the kept epoch (0-based), its score, every epoch's score, and
    its wall time in seconds, of which `score_seconds` went into the per-epoch scoring."""

    best_epoch: int
    best_score: float
    epoch_scores: list[float] = field(default_factory=list)
    seconds: float = 0.0
    score_seconds: float = 0.0


def fit(
    model: nn.Module,
    plan: TrainingPlan,
    data: Split,
    execution: Execution | torch.device | str = "cpu",
    seed: int = 0,
    round_number: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
) -> FitResult:
    """Train `model` on `data` as `plan` says and load the weights of the best-scoring epoch.

    `plan.score(model)` is called after every epoch (higher is better; the first of equal scores
    wins). Round 0 trains with `plan.warm_up` and `plan.warm_up_score` when the plan has them.
    Every random choice is seeded from (`seed`, purpose, `round_number`): the batch order
    (``shuffle``), the attack's random starts (``train-attack``) and, with `plan.augment`, the
    random crops and flips (``augment``, `robustal.data.augment`). The regime's forward passes
    run in `execution`'s context (a device means fp32 eager there; see `robustal.accel`);
    weights, gradients and optimizer state stay float32. `optimizer` replaces the plan's
    (a fresh one per call) to carry its state across calls; `plan.lr_schedule` steps per batch.
    """
    if plan.epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {plan.epochs}")
    start = time.perf_counter()
    execution = Execution.of(execution)
    device = execution.device
    warming_up = round_number == 0 and plan.warm_up is not None
    regime = plan.warm_up if warming_up else plan.regime
    score = plan.warm_up_score if warming_up else plan.score
    if optimizer is None:
        optimizer = make_optimizer(plan.optimizer, model, plan.lr, plan.weight_decay)
    shuffle_generator = torch_generator(seed, "shuffle", round_number)
    attack_generator = torch_generator(seed, "train-attack", round_number, device=device)
    augment_generator = torch_generator(seed, "augment", round_number) if plan.augment else None
    images = data.images.to(device)
    labels = data.labels.to(device)
    batch_size = plan.batch_size
    scheduler = make_scheduler(plan.lr_schedule, optimizer, plan.epochs * -(-len(data) // batch_size))
    best_state, best_score, best_epoch, scores, score_seconds = None, float("-inf"), -1, [], 0.0
    for epoch in range(plan.epochs):
        order = torch.randperm(len(data), generator=shuffle_generator).to(device)
        with model_mode(model, training=True):
            for part in batch_slices(len(data), batch_size):
                batch = order[part]
                if len(batch) == 1 and len(data) > 1:
                    continue  # BatchNorm cannot train on one sample; it is seen in other epochs
                inputs = images[batch]
                if augment_generator is not None:
                    inputs = augment(inputs, augment_generator)
                with execution.context():
                    loss = regime.loss(model, to_float(inputs), labels[batch], attack_generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
        score_start = time.perf_counter()
        epoch_score = float(score(model))
        score_seconds += time.perf_counter() - score_start
        scores.append(epoch_score)
        if epoch_score > best_score:
            best_state, best_score, best_epoch = copy.deepcopy(model.state_dict()), epoch_score, epoch
    model.load_state_dict(best_state)
    return FitResult(best_epoch, best_score, scores, time.perf_counter() - start, score_seconds)
