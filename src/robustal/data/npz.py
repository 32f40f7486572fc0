"""A user's own data as one ``.npz`` file, named by its path: ``load_dataset("data/mine.npz")``.

The file (``numpy.savez`` or ``numpy.savez_compressed``) holds:

- ``x_train``, ``x_test`` (and optionally ``x_val``): uint8 images, 0..255, square, one of
  ``(N, H, W)`` (grayscale), ``(N, C, H, W)`` or ``(N, H, W, C)`` with C = 1 or 3. The layout is
  read from the shape: ``(N, C, H, H)`` with C in {1, 3} is channels-first, ``(N, H, H, C)``
  channels-last (channels-first wins when both fit, e.g. 3x3 images with 3 channels).
- ``y_train``, ``y_test`` (and ``y_val``): integer class labels 0..K-1, shape ``(N,)`` or ``(N, 1)``;
  together they must use every class 0..K-1 (K >= 2), none skipped.

Validation is ``x_val, y_val`` when present, else the first half of the test split (the
paper's convention, so the test split needs at least 2 images), the rest being the test split. Default model: ``small_cnn``; no training
augmentation.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from robustal.data.dataset import ImageDataset, Split, split_validation
from robustal.data.registry import DatasetInfo, register_file_format
from robustal.errors import DataError, decoding_errors

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
OPTIONAL = ("x_val", "y_val")
CHANNELS = (1, 3)
DEFAULT_MODEL = "small_cnn"
LAYOUTS = "(N, H, W), (N, C, H, W) or (N, H, W, C) with C = 1 or 3 and H = W"


def image_layout(shape: tuple[int, ...], source: str) -> str:
    """``"NHW"``, ``"NCHW"`` or ``"NHWC"`` for an image array of `shape` (see the module doc)."""
    if len(shape) == 3 and shape[1] == shape[2]:
        return "NHW"
    if len(shape) == 4 and shape[1] in CHANNELS and shape[2] == shape[3]:
        return "NCHW"
    if len(shape) == 4 and shape[3] in CHANNELS and shape[1] == shape[2]:
        return "NHWC"
    raise DataError(f"{source}: image shape {tuple(shape)} is not one of {LAYOUTS}")


def to_nchw(images: np.ndarray, layout: str) -> np.ndarray:
    """`images` in `layout` as a contiguous (N, C, H, W) array."""
    if layout == "NHW":
        return np.ascontiguousarray(images[:, None])
    if layout == "NHWC":
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    return np.ascontiguousarray(images)


def check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"missing dataset file {path} (a .npz with {', '.join(REQUIRED)})")


def read_header(path: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of array `key` in the .npz at `path`, read without loading the array."""
    check_file(path)
    with decoding_errors(unreadable_message(path)), zipfile.ZipFile(path) as archive:
        if f"{key}.npy" not in archive.namelist():
            raise DataError(f"{path}: no array {key!r}; a dataset .npz needs {', '.join(REQUIRED)}")
        with archive.open(f"{key}.npy") as handle:
            version = np.lib.format.read_magic(handle)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(handle)
            return tuple(shape), np.dtype(dtype)


def unreadable_message(path: Path) -> str:
    """The `decoding_errors` message of a damaged .npz at `path`."""
    return f"{path}: not a readable .npz file ({{reason}}); save it again with numpy.savez or copy it again"


def check_images(shape: tuple[int, ...], dtype: np.dtype, source: str) -> str:
    """The layout of an image array; `DataError` unless uint8 in an accepted layout."""
    if dtype != np.uint8:
        raise DataError(
            f"{source}: images must be uint8 0..255, got {dtype}; convert them, e.g. "
            "(x * 255).round().astype(numpy.uint8) for floats in [0, 1]"
        )
    return image_layout(shape, source)


def read_split(arrays, path: Path, suffix: str) -> Split:
    """Split ``x_<suffix>``, ``y_<suffix>`` as uint8 (N, C, H, W) images and int64 labels."""
    x_key, y_key = f"x_{suffix}", f"y_{suffix}"
    images, labels = arrays[x_key], arrays[y_key]
    layout = check_images(images.shape, images.dtype, f"{path}:{x_key}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}:{y_key}: labels must be integers 0..K-1, got {labels.dtype}")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape != (images.shape[0],):
        raise DataError(f"{path}: {x_key} holds {images.shape[0]} images but {y_key} has shape {labels.shape}")
    if images.shape[0] == 0:
        raise DataError(f"{path}:{x_key} is empty")
    if labels.min() < 0:
        raise DataError(f"{path}:{y_key}: labels must be >= 0, got {labels.min()}")
    return Split(torch.from_numpy(to_nchw(images, layout)), torch.from_numpy(labels.astype(np.int64)))


def count_classes(path: Path, splits) -> int:
    """K, when the labels of `splits` together are exactly the classes 0..K-1; `DataError`
    otherwise: a skipped class would become an output never trained (and a label of 10**12 a
    model of 10**12 outputs), so labels are never mapped silently."""
    present = np.unique(np.concatenate([split.labels.numpy() for split in splits]))
    if int(present[-1]) + 1 != len(present):
        shown = ", ".join(str(label) for label in present[:12]) + (", ..." if len(present) > 12 else "")
        raise DataError(
            f"{path}: labels must be the classes 0..K-1 with none skipped; found {len(present)} distinct labels "
            f"({shown}), the largest {present[-1]}; renumber them, e.g. "
            "numpy.unique(numpy.concatenate([y_train, y_test]), return_inverse=True)"
        )
    return len(present)


def load_npz_dataset(path: Path) -> ImageDataset:
    """The dataset in .npz file `path` (format: see the module doc); `DataError` on any problem."""
    path = Path(path)
    check_file(path)
    # every decoder error (zipfile, zlib, numpy's header parser, CRC checks ...) names the file
    with decoding_errors(unreadable_message(path)), np.load(path, allow_pickle=False) as content:
        arrays = {key: content[key] for key in content.files}
    missing = [key for key in REQUIRED if key not in arrays]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)}; a dataset .npz needs {', '.join(REQUIRED)} (found {', '.join(sorted(arrays))})")
    has_validation = [key in arrays for key in OPTIONAL]
    if any(has_validation) and not all(has_validation):
        raise DataError(f"{path}: give both x_val and y_val, or neither (validation = first half of the test split)")
    splits = {suffix: read_split(arrays, path, suffix) for suffix in ("train", "test", *(("val",) if all(has_validation) else ()))}
    shapes = {suffix: tuple(split.images.shape[1:]) for suffix, split in splits.items()}
    if len(set(shapes.values())) > 1:
        raise DataError(f"{path}: every split needs the same image shape (C, H, W), got {shapes}")
    num_classes = count_classes(path, splits.values())
    name = str(path)
    if "val" in splits:
        return ImageDataset(name, splits["train"], splits["val"], splits["test"], num_classes)
    test = splits["test"]
    return split_validation(name, splits["train"], test, num_classes, validation_size=len(test) // 2)


def npz_dataset_info(path: Path) -> DatasetInfo:
    """The registry entry of .npz file `path` (reads only the array headers)."""
    train_shape, train_dtype = read_header(path, "x_train")
    layout = check_images(train_shape, train_dtype, f"{path}:x_train")
    channels = {"NHW": 1, "NCHW": train_shape[1], "NHWC": train_shape[-1]}[layout]
    size = train_shape[-1] if layout != "NHWC" else train_shape[1]
    test_shape, test_dtype = read_header(path, "x_test")
    check_images(test_shape, test_dtype, f"{path}:x_test")
    test_count = test_shape[0]
    return DatasetInfo(
        name=str(path),
        loader=lambda data_root: load_npz_dataset(path),
        default_model=DEFAULT_MODEL,
        native_size=size,
        default_size=size,
        description=f"{path.name}: {train_shape[0]} train, {test_count} test images of {channels}x{size}x{size}",
    )


register_file_format(".npz", npz_dataset_info)
