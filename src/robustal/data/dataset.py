"""In-memory image datasets: uint8 tensors, converted to float in [0, 1] per batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from robustal.errors import DataError

MIN_CLASSES = 2


@dataclass(frozen=True)
class Split:
    """One split of a dataset: ``images`` uint8 (N, C, H, W) and ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DataError(f"images must be a uint8 tensor (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(f"{self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: torch.Tensor | slice) -> "Split":
        """The samples at `indices` (a view when `indices` is a slice)."""
        return Split(self.images[indices], self.labels[indices])


@dataclass(frozen=True)
class ImageDataset:
    """A classification dataset with train / validation / test splits.

    Indices handed around by robustal (labeled set, pool, selections) are always indices
    into ``train``. ``validation`` is for model selection, ``test`` for reported metrics.
    """

    name: str
    train: Split
    validation: Split
    test: Split
    num_classes: int

    def __post_init__(self) -> None:
        # checked here, at load time, so that bad data fails before any compute: an empty
        # validation or test split would score 100 % (0 of 0 wrong), labels beyond num_classes
        # crash the loss mid-training, and one class leaves nothing to classify
        if self.num_classes < MIN_CLASSES:
            raise DataError(f"{self.name}: {self.num_classes} class; a classification dataset needs at least {MIN_CLASSES}")
        for split_name in ("train", "validation", "test"):
            split = getattr(self, split_name)
            if len(split) == 0:
                raise DataError(f"{self.name}: the {split_name} split is empty; every split needs at least one image")
            low, high = int(split.labels.min()), int(split.labels.max())
            if low < 0 or high >= self.num_classes:
                raise DataError(
                    f"{self.name}: {split_name} labels span {low}..{high}, outside the classes 0..{self.num_classes - 1}"
                )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of every image."""
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    @property
    def channels(self) -> int:
        return self.image_shape[0]

    @property
    def image_size(self) -> int:
        return self.image_shape[1]


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of uint8 images to `size` x `size`, rounded back to uint8 (like PIL's Resize)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    resized = []
    for chunk in images.split(4096):
        scaled = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", align_corners=False)
        resized.append(scaled.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(resized)


def split_validation(name: str, train: Split, test: Split, num_classes: int, validation_size: int) -> ImageDataset:
    """The paper's split: the first `validation_size` test images validate, the rest test.

    Raises `DataError` naming the minimum when either part would be empty.
    """
    validating = max(validation_size, 1)
    if validating >= len(test) or validation_size < 1:
        raise DataError(
            f"{name}: the test split holds {len(test)} image(s); at least {validating + 1} are needed: the first "
            f"{validating} validate (model selection), the rest are the test set (an empty split would score 100 %)"
        )
    return ImageDataset(
        name=name,
        train=train,
        validation=test.subset(slice(0, validation_size)),
        test=test.subset(slice(validation_size, None)),
        num_classes=num_classes,
    )
