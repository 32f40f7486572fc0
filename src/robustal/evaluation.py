"""Clean accuracy and robust accuracy (accuracy on adversarial examples) of a model on a split."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robustal.attacks import Attack
from robustal.data.dataset import Split
from robustal.runtime import batch_slices, model_mode, to_float

EVAL_BATCH_SIZE = 500


@dataclass(frozen=True)
class Metrics:
    """Accuracies in [0, 1]; ``robust_accuracy`` is None when no attack was run."""

    clean_accuracy: float
    robust_accuracy: float | None


def evaluate(
    model: nn.Module,
    split: Split,
    device: torch.device,
    attack: Attack | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = EVAL_BATCH_SIZE,
) -> Metrics:
    """Clean accuracy on `split` and, if `attack` is given, accuracy on its adversarial examples.

    The model is evaluated in eval mode and left in the mode it was in.
    """
    clean_correct = torch.zeros((), dtype=torch.long, device=device)
    robust_correct = torch.zeros((), dtype=torch.long, device=device)
    with model_mode(model, training=False):
        for part in batch_slices(len(split), batch_size):
            x = to_float(split.images[part].to(device, non_blocking=True))
            y = split.labels[part].to(device, non_blocking=True)
            with torch.inference_mode():
                clean_correct += (model(x).argmax(1) == y).sum()
            if attack is not None:
                x_adv = attack(model, x, y, generator)
                with torch.inference_mode():
                    robust_correct += (model(x_adv).argmax(1) == y).sum()
    total = max(len(split), 1)
    robust = robust_correct.item() / total if attack is not None else None
    return Metrics(clean_correct.item() / total, robust)
