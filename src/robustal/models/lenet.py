"""LeNet-5 as in the paper's code: conv 6/16/120 with BatchNorm, fc 84, logits."""

from __future__ import annotations

from torch import nn

from robustal.errors import ConfigError
from robustal.models.base import Classifier
from robustal.models.registry import register_model


@register_model("lenet5")
def lenet5(in_channels: int, num_classes: int, image_size: int) -> Classifier:
    """LeNet-5 for 32x32 inputs (MNIST resized like the paper).

    28x28 inputs are zero-padded by 2 in the first convolution, which gives the same geometry.
    Embedding: the 84-unit layer.
    """
    if image_size not in (28, 32):
        raise ConfigError(f"lenet5 takes 28x28 or 32x32 images, got {image_size}x{image_size}; use --image-size 32")
    padding = (32 - image_size) // 2
    features = nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=padding),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 120, 5),
        nn.BatchNorm2d(120),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(120, 84),
        nn.ReLU(),
    )
    return Classifier(features, nn.Linear(84, num_classes))
