"""Training-time augmentation of SVHN and CIFAR-10 as in the paper, on tensors (no torchvision).

The paper trains with ``RandomCrop(32, padding=4)`` then ``RandomHorizontalFlip()``: each image
is zero-padded by 4 pixels on every side, a window of the original size is cut at a uniformly
random offset, and the window is mirrored left-right with probability 1/2. Datasets that use
it say so in their registry entry (``DatasetInfo.augment``).
"""

from __future__ import annotations

import torch

from robustal.errors import ConfigError

PADDING = 4


def augment(images: torch.Tensor, generator: torch.Generator, padding: int = PADDING) -> torch.Tensor:
    """Random crop with zero `padding` and random horizontal flip of every image of a batch.

    `images`: (N, C, H, W), uint8 or float; the result has the same shape, dtype and device,
    and `images` is left unchanged. Per image, the crop offsets (2 integers in [0, 2 * padding])
    and then the flip (probability 1/2) are drawn from `generator` on its own device, so a
    CPU generator with the same seed gives the same augmentation on any device.
    """
    if images.ndim != 4:
        raise ConfigError(f"augment takes a batch (N, C, H, W), got shape {tuple(images.shape)}")
    if padding < 0:
        raise ConfigError(f"padding must be >= 0, got {padding}")
    count, channels, height, width = images.shape
    offsets = torch.randint(0, 2 * padding + 1, (count, 2), generator=generator, device=generator.device)
    flips = torch.rand(count, generator=generator, device=generator.device) < 0.5
    offsets, flips = offsets.to(images.device), flips.to(images.device)
    padded = images.new_zeros((count, channels, height + 2 * padding, width + 2 * padding))
    padded[:, :, padding : padding + height, padding : padding + width] = images
    rows = offsets[:, :1] + torch.arange(height, device=images.device)  # (N, H)
    columns = torch.arange(width, device=images.device)
    columns = torch.where(flips[:, None], columns.flip(0), columns) + offsets[:, 1:]  # (N, W), mirrored when flipped
    batch = torch.arange(count, device=images.device)[:, None, None]
    crops = padded[batch, :, rows[:, :, None], columns[:, None, :]]  # (N, H, W, C)
    return crops.permute(0, 3, 1, 2).contiguous()
