"""The dataset registry: a name -> how to load it, with its default model.

Besides registered names, a path to a file in a registered file format (``.npz``, see
`robustal.data.npz`) names a dataset: ``load_dataset("my_data.npz")``; so does a registered
scheme with a path: ``folder:PATH`` and ``csv:FILE.csv`` (image files, see `robustal.data.folder`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from robustal.data.dataset import ImageDataset, resize_images, Split
from robustal.data.paths import resolve_data_root
from robustal.errors import ConfigError, unknown_name_error

Loader = Callable[[Path], ImageDataset]
SizedLoader = Callable[[Path, int], ImageDataset]
# The largest image side: the paper's images are 32x32, ImageNet-sized models use 224.
MAX_IMAGE_SIZE = 512


@dataclass(frozen=True)
class DatasetInfo:
    """How to load a registered dataset and what goes with it."""

    name: str
    loader: Loader
    default_model: str
    native_size: int
    default_size: int
    description: str
    augment: bool = False  # train with random crop (padding 4) + horizontal flip (robustal.data.augment)
    # loads at a given image size itself (readers that decode every image file): no resize after loading
    sized_loader: SizedLoader | None = None


_DATASETS: dict[str, DatasetInfo] = {}
_FILE_FORMATS: dict[str, Callable[[Path], DatasetInfo]] = {}
_SCHEMES: dict[str, Callable[[str, Path], DatasetInfo]] = {}


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add a dataset to the registry (a name can be registered once)."""
    if info.name in _DATASETS:
        raise ConfigError(f"dataset {info.name!r} is already registered")
    _DATASETS[info.name] = info
    return info


def register_file_format(suffix: str, describe: Callable[[Path], DatasetInfo]) -> None:
    """Let paths ending in `suffix` (e.g. ``".npz"``) name datasets; `describe(path)` gives their entry."""
    suffix = suffix.lower()
    if suffix in _FILE_FORMATS:
        raise ConfigError(f"file format {suffix!r} is already registered")
    _FILE_FORMATS[suffix] = describe


def register_dataset_scheme(scheme: str, describe: Callable[[str, Path], DatasetInfo]) -> None:
    """Let names ``SCHEME:PATH`` (e.g. ``folder:photos``) name datasets; `describe(name, path)` gives their entry."""
    if scheme in _SCHEMES:
        raise ConfigError(f"dataset scheme {scheme!r} is already registered")
    _SCHEMES[scheme] = describe


def available_datasets() -> list[str]:
    """Names of all registered datasets."""
    return sorted(_DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry of `name`, of ``SCHEME:PATH`` for a registered scheme (``folder:``,
    ``csv:``), or of the file `name` when it ends in a registered suffix (``.npz``); unknown
    names raise `ConfigError` listing the valid ones."""
    if name in _DATASETS:
        return _DATASETS[name]
    scheme, colon, path = name.partition(":")
    if colon and scheme in _SCHEMES:
        return _SCHEMES[scheme](name, Path(path).expanduser())
    suffix = Path(name).suffix.lower()
    if suffix in _FILE_FORMATS:
        return _FILE_FORMATS[suffix](Path(name).expanduser())
    others = [f"a path to a {', '.join(sorted(_FILE_FORMATS))} file"] if _FILE_FORMATS else []
    others += [f"{scheme}:PATH" for scheme in sorted(_SCHEMES)]
    error = unknown_name_error("dataset", name, available_datasets())
    raise ConfigError(f"{error}; or {' or '.join(others)}" if others else str(error))


def check_image_size(size: int, dataset: str) -> int:
    """`size` when it is an image side robustal can train on (1..`MAX_IMAGE_SIZE`), else `ConfigError`."""
    if not 0 < size <= MAX_IMAGE_SIZE:
        raise ConfigError(
            f"image size {size} of {dataset} is outside 1..{MAX_IMAGE_SIZE}: every split is resized in memory at once "
            f"(60,000 images of {MAX_IMAGE_SIZE}x{MAX_IMAGE_SIZE} are 15 GiB) and the models' activations grow with "
            "the image area; choose a smaller --image-size"
        )
    return size


def load_dataset(name: str, data_root: str | os.PathLike | None = None, image_size: int | None = None) -> ImageDataset:
    """Load dataset `name` from `data_root` (see `resolve_data_root`); `name` may be a ``.npz``
    path, ``folder:PATH`` or ``csv:FILE.csv`` (image files, cached under the data root).

    `image_size` resizes every image to `image_size` x `image_size` (bilinear); ``None`` uses
    the dataset's default (32 for MNIST and Fashion-MNIST, like the paper; 28 keeps them native).
    """
    info = dataset_info(name)
    size = check_image_size(info.default_size if image_size is None else image_size, info.name)
    if info.sized_loader is not None:
        return info.sized_loader(resolve_data_root(data_root), size)
    dataset = info.loader(resolve_data_root(data_root))
    if dataset.image_size == size:
        return dataset

    def resized(split: Split) -> Split:
        return Split(resize_images(split.images, size), split.labels)

    return ImageDataset(dataset.name, resized(dataset.train), resized(dataset.validation), resized(dataset.test), dataset.num_classes)
