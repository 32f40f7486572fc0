"""VGG networks of the paper: VGG8 (SVHN) and VGG16 (CIFAR-10), with BatchNorm.

Layer structures follow the paper's code: VGG8 is the ``vgg8_bn`` of its ``utils_svhn.py``
(five conv blocks 64-128-256-512-512, max-pooling after the first three, global average
pooling, one linear layer); VGG16 is the CIFAR-10 VGG16 of kuangliu/pytorch-cifar, which the
paper's code imports (13 conv layers, 5 max-pools, one linear layer). Global average pooling
is adaptive, so other image sizes work too; at 32x32 it is exactly the paper's layer.
"""

from __future__ import annotations

import math

from torch import nn

from robustal.errors import ConfigError
from robustal.models.base import Classifier
from robustal.models.registry import register_model

VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
VGG8_LAYERS = (64, "M", 128, "M", 256, "M", 512, 512)


def check_min_image_size(model: str, image_size: int, minimum: int) -> None:
    """`ConfigError` when `image_size` is below what `model`'s downsampling needs."""
    if image_size < minimum:
        raise ConfigError(
            f"{model} needs images of at least {minimum}x{minimum}, got {image_size}x{image_size}; "
            f"use --image-size {max(minimum, 32)}"
        )


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1) -> list[nn.Module]:
    """Convolution (with bias, like the paper's models), BatchNorm, ReLU."""
    return [nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding), nn.BatchNorm2d(out_channels), nn.ReLU()]


def vgg_features(in_channels: int, layers: tuple) -> nn.Sequential:
    """Conv-BN-ReLU blocks (an int is a 3x3 conv's width, "M" a 2x2 max-pool), then global
    average pooling and flattening: the output is the embedding."""
    modules: list[nn.Module] = []
    for layer in layers:
        if layer == "M":
            modules.append(nn.MaxPool2d(2))
        else:
            modules += conv_bn_relu(in_channels, layer)
            in_channels = layer
    return nn.Sequential(*modules, nn.AdaptiveAvgPool2d(1), nn.Flatten())


@register_model("vgg8")
def vgg8(in_channels: int, num_classes: int, image_size: int) -> Classifier:
    """VGG8 with BatchNorm (paper, SVHN): 5 conv layers, 3 max-pools, 512-d embedding.

    Initialised like the paper's code: conv weights N(0, 2 / (9 * out_channels)), linear
    weights N(0, 0.01), zero biases, BatchNorm weight 1 and bias 0.
    """
    check_min_image_size("vgg8", image_size, 8)
    model = Classifier(vgg_features(in_channels, VGG8_LAYERS), nn.Linear(512, num_classes))
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
            nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)
    return model


@register_model("vgg16")
def vgg16(in_channels: int, num_classes: int, image_size: int) -> Classifier:
    """VGG16 with BatchNorm for 32x32 images (paper, CIFAR-10): 13 conv layers, 512-d embedding."""
    check_min_image_size("vgg16", image_size, 32)
    return Classifier(vgg_features(in_channels, VGG16_LAYERS), nn.Linear(512, num_classes))
