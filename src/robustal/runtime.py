"""Small torch helpers shared by every layer: device choice, model modes, batching.

How a run executes (precision, memory format, compilation, the attack view, CUDA graphs) is
`robustal.accel.Execution`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from robustal.errors import ConfigError


def select_device(name: str = "auto") -> torch.device:
    """The torch device for `name`: ``auto`` picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"invalid device {name!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use --device cpu or auto")
    return device


@contextlib.contextmanager
def model_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Put `model` in train (`training=True`) or eval mode, restoring its previous mode on exit."""
    was_training = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was_training)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float32 in [0, 1]; float input is returned as float32."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


def batch_slices(total: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices of at most `batch_size` covering ``range(total)``."""
    if batch_size <= 0:
        raise ConfigError(f"batch size must be positive, got {batch_size}")
    for start in range(0, total, batch_size):
        yield slice(start, min(start + batch_size, total))
