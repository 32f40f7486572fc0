"""Small networks for tiny images (scikit-learn digits) and for tests."""

from __future__ import annotations

from torch import nn

from robustal.models.base import Classifier
from robustal.models.registry import register_model


@register_model("small_cnn")
def small_cnn(in_channels: int, num_classes: int, image_size: int) -> Classifier:
    """Two 3x3 conv blocks (16, 32 channels, BatchNorm) and a 64-unit embedding; for 8x8 digits."""
    features = nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(32 * 16, 64),
        nn.ReLU(),
    )
    return Classifier(features, nn.Linear(64, num_classes))


@register_model("mlp")
def mlp(in_channels: int, num_classes: int, image_size: int) -> Classifier:
    """A two-hidden-layer perceptron (256, 128) on flattened pixels."""
    features = nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_channels * image_size * image_size, 256),
        nn.ReLU(),
        nn.Linear(256, 128),
        nn.ReLU(),
    )
    return Classifier(features, nn.Linear(128, num_classes))
