"""Monte Carlo dropout (Gal & Ghahramani, 2016) for any model, and the scores built on it.

Dropout is added by forward hooks on the model's activation modules (ReLU and friends; on
``model.features``, i.e. the embedding, when the model has none): each hook zeroes an
activation with probability `rate` and scales the rest by 1 / (1 - rate). The model is neither
copied nor put in training mode, so BatchNorm keeps using its running statistics and its
statistics are not updated; the hooks are removed afterwards, even on error. The masks are
drawn from a torch Generator, so T passes are reproducible for a seed.

The paper's code inserts ``nn.Dropout(0.1)`` after every ReLU of LeNet-5 / VGG16 in a deep copy
of the model and uses T = 10 passes; those are the defaults here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from robustal.acquisition.base import PoolContext, ScoreAcquisition, check_positive_int, torch_generator_from
from robustal.acquisition.registry import register_acquisition
from robustal.acquisition.scoring import entropy, softmax, stream_batches
from robustal.errors import ConfigError

DROPOUT_RATE = 0.1
DROPOUT_PASSES = 10

ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Tanh,
)  # fmt: skip


def dropout_sites(model: nn.Module) -> list[nn.Module]:
    """The modules whose outputs MC dropout perturbs: every activation module of `model`, or,
    when it has none (functional activations), its ``features`` (the embedding)."""
    activations = [module for module in model.modules() if isinstance(module, ACTIVATION_TYPES)]
    if activations:
        return activations
    features = getattr(model, "features", None)
    if isinstance(features, nn.Module):
        return [features]
    raise ConfigError(f"MC dropout found no activation module and no `features` in {type(model).__name__}")


def check_dropout_rate(rate: float) -> float:
    """`rate` as a float, or `ConfigError` unless 0 <= rate < 1."""
    if not 0.0 <= float(rate) < 1.0:
        raise ConfigError(f"dropout rate must be in [0, 1), got {rate}")
    return float(rate)


@contextlib.contextmanager
def mc_dropout(model: nn.Module, rate: float, generator: torch.Generator) -> Iterator[nn.Module]:
    """Within the block, every forward pass of `model` drops activations (see the module doc).

    `generator` must live on the device the model runs on.
    """
    rate = check_dropout_rate(rate)

    def drop(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        keep = torch.rand(output.shape, generator=generator, device=output.device) >= rate
        return output * keep.to(output.dtype) / (1.0 - rate)

    handles = []
    try:
        for module in dropout_sites(model):
            handles.append(module.register_forward_hook(drop))
        yield model
    finally:
        for handle in handles:
            handle.remove()


def mc_dropout_outputs(
    context: PoolContext,
    indices: np.ndarray,
    reduce: Callable[[torch.Tensor], torch.Tensor],
    generator: torch.Generator,
    rate: float = DROPOUT_RATE,
    passes: int = DROPOUT_PASSES,
) -> torch.Tensor:
    """``reduce(P)`` per batch, concatenated, where P (passes, batch, classes) stacks the softmax
    outputs of `passes` MC dropout forward passes; memory stays O(passes x batch x classes)."""
    passes = check_positive_int("MC dropout", "passes", passes)

    def batch_outputs(x: torch.Tensor) -> torch.Tensor:
        return reduce(torch.stack([softmax(context.model(x)) for _ in range(passes)]))

    with mc_dropout(context.model, rate, generator):
        return stream_batches(context, indices, batch_outputs)


def entropy_dropout_scores(pass_probabilities: torch.Tensor) -> torch.Tensor:
    """H[mean_t p_t]: entropy of the mean of the T pass probabilities (T, n, classes) -> (n,)."""
    return entropy(pass_probabilities.mean(dim=0))


def bald_scores(pass_probabilities: torch.Tensor) -> torch.Tensor:
    """Mutual information H[mean_t p_t] - mean_t H[p_t] between prediction and weights (BALD).

    (T, n, classes) -> (n,); zero when all passes agree, large when they are confident but disagree.
    """
    return entropy_dropout_scores(pass_probabilities) - entropy(pass_probabilities).mean(dim=0)


class MCDropoutAcquisition(ScoreAcquisition):
    """Scores are ``score_function(P)`` of T MC dropout passes P (T, n, classes).

    Options: `dropout_rate` (paper: 0.1) and `passes` T (paper: 10), and `sampling` / `beta`
    (`ScoreAcquisition`).
    """

    score_function: ClassVar[Callable[[torch.Tensor], torch.Tensor]]

    def __init__(self, dropout_rate: float = DROPOUT_RATE, passes: int = DROPOUT_PASSES, **batch_sampling) -> None:
        super().__init__(**batch_sampling)
        self.dropout_rate = check_dropout_rate(dropout_rate)
        self.passes = check_positive_int(self.name, "passes", passes)

    def scores(self, context, pool, rng):
        generator = torch_generator_from(rng, context.device)
        reduce = type(self).score_function
        return mc_dropout_outputs(context, pool, reduce, generator, self.dropout_rate, self.passes).numpy()


@register_acquisition
class EntropyDropout(MCDropoutAcquisition, score_function=entropy_dropout_scores):
    """Highest entropy of the mean MC dropout prediction, H[(1/T) sum_t p_t]
    (Gal, Islam & Ghahramani, "Deep Bayesian Active Learning with Image Data", ICML 2017)."""

    name = "entropy_dropout"


@register_acquisition
class BALD(MCDropoutAcquisition, score_function=bald_scores):
    """Bayesian active learning by disagreement: highest H[(1/T) sum_t p_t] - (1/T) sum_t H[p_t]
    (Houlsby et al., 2011; with MC dropout: Gal, Islam & Ghahramani, ICML 2017)."""

    name = "bald"
