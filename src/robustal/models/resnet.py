"""ResNet18 and PreActResNet18 for 32x32 images (paper, CIFAR-10).

Layer structures follow kuangliu/pytorch-cifar, which the paper's code imports: a 3x3 stem
(no max-pool), four stages of two basic blocks (64, 128, 256, 512 channels; strides 1, 2, 2, 2),
global average pooling and one linear layer. Activations are ``nn.ReLU`` modules (not
functional calls) so that MC dropout hooks find them.
"""

from __future__ import annotations

import torch
from torch import nn

from robustal.models.base import Classifier
from robustal.models.registry import register_model
from robustal.models.vgg import check_min_image_size

STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))
BLOCKS_PER_STAGE = 2


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the (projected) input, then ReLU (He et al., 2016)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """BN-ReLU-conv-BN-ReLU-conv plus the input, projected after the first BN-ReLU when the
    shape changes (He et al., 2016, identity mappings)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.conv2 = conv3x3(out_channels, out_channels)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(self.relu2(self.bn2(self.conv1(out))))
        return out + shortcut


def resnet_features(stem: list[nn.Module], block: type[nn.Module]) -> nn.Sequential:
    """`stem`, the four stages of `block`, global average pooling, flattening (512-d embedding)."""
    layers = list(stem)
    in_channels = 64
    for out_channels, stride in STAGES:
        for index in range(BLOCKS_PER_STAGE):
            layers.append(block(in_channels, out_channels, stride if index == 0 else 1))
            in_channels = out_channels
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


@register_model("resnet18")
def resnet18(in_channels: int, num_classes: int, image_size: int) -> Classifier:
    """ResNet18 for 32x32 images (paper, CIFAR-10); embedding: the 512 pooled channels."""
    check_min_image_size("resnet18", image_size, 8)
    stem = [conv3x3(in_channels, 64), nn.BatchNorm2d(64), nn.ReLU()]
    return Classifier(resnet_features(stem, BasicBlock), nn.Linear(512, num_classes))


@register_model("preact_resnet18")
def preact_resnet18(in_channels: int, num_classes: int, image_size: int) -> Classifier:
    """PreActResNet18 for 32x32 images (paper, CIFAR-10); like kuangliu's, no BN-ReLU after the
    last block. Embedding: the 512 pooled channels."""
    check_min_image_size("preact_resnet18", image_size, 8)
    return Classifier(resnet_features([conv3x3(in_channels, 64)], PreActBlock), nn.Linear(512, num_classes))
