"""Clean accuracy and robust accuracy (accuracy on adversarial examples) of a model on a split."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robustal.accel import Execution
from robustal.attacks import Attack
from robustal.data.dataset import Split
from robustal.runtime import batch_slices, model_mode, to_float

# Samples per batch. The batch size does not change the results (every sample is attacked on
# its own; fp32 results are identical for any batch size), only the speed: on CPU, LeNet-5 in
# bf16 + channels_last evaluates faster at 1,000 than at 250, in fp32 NCHW slower
# (benchmarks/results/training.md).
EVAL_BATCH_SIZE = 500


@dataclass(frozen=True)
class Metrics:
    """Accuracies in [0, 1]; ``robust_accuracy`` is None when no attack was run.

    ``robust_accuracy`` counts a sample only when it is classified correctly both clean and
    under attack (the RobustBench / AutoAttack convention). The paper's code counts the attacked
    prediction alone, which can credit a sample the model gets wrong clean when the attack's
    random start or a failed step lands on the right class; ours is never above clean accuracy.
    """

    clean_accuracy: float
    robust_accuracy: float | None


def evaluate(
    model: nn.Module,
    split: Split,
    execution: Execution | torch.device | str = "cpu",
    attack: Attack | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = EVAL_BATCH_SIZE,
) -> Metrics:
    """Clean accuracy on `split` and, if `attack` is given, accuracy on its adversarial examples.

    The model is evaluated in eval mode and left in the mode it was in; predictions run under
    ``torch.inference_mode``, and everything (the attack too) in `execution`'s context (a device
    means fp32 eager there; see `robustal.accel`). The split is moved to the device once, and
    correct counts are accumulated on the device: the only host synchronisation is the final result.
    """
    execution = Execution.of(execution)
    device = execution.device
    images = split.images.to(device, non_blocking=True)
    labels = split.labels.to(device, non_blocking=True)
    clean_correct = torch.zeros((), dtype=torch.long, device=device)
    robust_correct = torch.zeros((), dtype=torch.long, device=device)
    with model_mode(model, training=False), execution.context():
        for part in batch_slices(len(split), batch_size):
            x, y = to_float(images[part]), labels[part]
            with torch.inference_mode():
                correct = model(x).argmax(1) == y
            clean_correct += correct.sum()
            if attack is not None:
                x_adv = attack(model, x, y, generator)
                with torch.inference_mode():
                    robust_correct += (correct & (model(x_adv).argmax(1) == y)).sum()
    total = max(len(split), 1)
    robust = robust_correct.item() / total if attack is not None else None
    return Metrics(clean_correct.item() / total, robust)
