"""GoogLeNet for 32x32 images (CIFAR-10), the sixth architecture of the paper's study.

The paper's CIFAR-10 code picks its models by index from kuangliu/pytorch-cifar's list
(VGG16, ResNet18, PreActResNet18, GoogLeNet, DenseNet121, ...); VGG16, ResNet18 and
PreActResNet18 are the first three and GoogLeNet the fourth. Layer structure as in that
repository: a 3x3 stem of 192 channels, nine Inception modules (3a, 3b, max-pool, 4a-4e,
max-pool, 5a, 5b; the 5x5 branch is two 3x3 convolutions), global average pooling and one
linear layer on the 1024-d embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from robustal.models.base import Classifier
from robustal.models.registry import register_model
from robustal.models.vgg import check_min_image_size, conv_bn_relu

# (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection); "M" is a 3x3 stride-2 max-pool
INCEPTION_MODULES = (
    (192, 64, 96, 128, 16, 32, 32),
    (256, 128, 128, 192, 32, 96, 64),
    "M",
    (480, 192, 96, 208, 16, 48, 64),
    (512, 160, 112, 224, 24, 64, 64),
    (512, 128, 128, 256, 24, 64, 64),
    (512, 112, 144, 288, 32, 64, 64),
    (528, 256, 160, 320, 32, 128, 128),
    "M",
    (832, 256, 160, 320, 32, 128, 128),
    (832, 384, 192, 384, 48, 128, 128),
)
EMBEDDING_SIZE = 1024


class Inception(nn.Module):
    """Four parallel branches concatenated along channels: 1x1; 1x1 -> 3x3; 1x1 -> 3x3 -> 3x3;
    3x3 max-pool -> 1x1; every convolution followed by BatchNorm and ReLU."""

    def __init__(
        self, in_channels: int, n1x1: int, n3x3_reduce: int, n3x3: int, n5x5_reduce: int, n5x5: int, pool_projection: int
    ) -> None:
        super().__init__()
        self.branch1 = nn.Sequential(*conv_bn_relu(in_channels, n1x1, 1, 0))
        self.branch2 = nn.Sequential(*conv_bn_relu(in_channels, n3x3_reduce, 1, 0), *conv_bn_relu(n3x3_reduce, n3x3))
        self.branch3 = nn.Sequential(
            *conv_bn_relu(in_channels, n5x5_reduce, 1, 0), *conv_bn_relu(n5x5_reduce, n5x5), *conv_bn_relu(n5x5, n5x5)
        )
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), *conv_bn_relu(in_channels, pool_projection, 1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


@register_model("googlenet")
def googlenet(in_channels: int, num_classes: int, image_size: int) -> Classifier:
    """GoogLeNet for 32x32 images (kuangliu/pytorch-cifar's); embedding: 1024 pooled channels."""
    check_min_image_size("googlenet", image_size, 4)
    layers: list[nn.Module] = conv_bn_relu(in_channels, 192)
    for module in INCEPTION_MODULES:
        layers.append(nn.MaxPool2d(3, stride=2, padding=1) if module == "M" else Inception(*module))
    features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Classifier(features, nn.Linear(EMBEDDING_SIZE, num_classes))
