"""CIFAR-10 from the original python pickle batches in ``<data root>/cifar10/``.

Either the extracted folder ``cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``,
``test_batch``) or the archive ``cifar-10-python.tar.gz`` itself (read without extracting).
50,000 training images; of the 10,000 test images the first 5,000 validate (the paper's split).

The batches are pickles; they are read with an unpickler that only accepts numpy arrays, so
a tampered file cannot run code.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from robustal.data.dataset import ImageDataset, Split, split_validation
from robustal.data.registry import DatasetInfo, register_dataset
from robustal.errors import DataError, decoding_errors

NAME = "cifar10"
ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{index}" for index in range(1, 6))
TEST_BATCH = "test_batch"
VALIDATION_SIZE = 5000

_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric")
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),  # bytes written by Python 3 at protocol 2
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    *((module, name) for module in _NUMPY_CORE for name in ("_reconstruct", "_frombuffer", "scalar")),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (a CIFAR batch holds only numpy arrays)")
        return super().find_class(module, name)


def parse_cifar_batch(content: bytes, source: str) -> Split:
    """One CIFAR-10 batch (a pickled dict with ``b"data"`` uint8 (N, 3072) and ``b"labels"``,
    N labels 0..9) as images (N, 3, 32, 32) and labels; `DataError` naming `source` otherwise."""
    # truncated or foreign pickles, and odd objects inside them, raise many exception types
    with decoding_errors(f"{source}: not a CIFAR-10 python batch ({{reason}}); download it again"):
        return _batch_split(_ArrayUnpickler(io.BytesIO(content), encoding="bytes").load(), source)


def _batch_split(batch, source: str) -> Split:
    """The split of an unpickled batch, checked against the CIFAR-10 format."""
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{source}: expected a dict with keys b'data' and b'labels' (CIFAR-10 python format)")
    images, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3 * 32 * 32:
        raise DataError(f"{source}: b'data' must be uint8 of shape (N, 3072), got {images.dtype} {images.shape}")
    if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{source}: {images.shape[0]} images but labels {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{source}: CIFAR-10 labels must be 0..9, got {labels.min()}..{labels.max()}")
    return Split(torch.from_numpy(images.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels.astype(np.int64)))


def read_batches(folder: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The raw bytes of batches `names` from ``folder/cifar-10-batches-py/`` or, when that
    folder is absent, from ``folder/cifar-10-python.tar.gz``."""
    extracted, archive = folder / FOLDER, folder / ARCHIVE
    if extracted.is_dir():
        missing = [name for name in names if not (extracted / name).is_file()]
        if missing:
            raise DataError(f"{NAME}: {extracted} lacks {', '.join(missing)}; extract {ARCHIVE} again")
        with decoding_errors(f"{extracted}: cannot read a batch ({{reason}}); extract {ARCHIVE} again"):
            return {name: (extracted / name).read_bytes() for name in names}
    if not archive.is_file():
        raise DataError(
            f"{NAME}: missing {archive} (or its extracted folder {extracted}); put the original archive in "
            f"{folder}/ (data root: --data-root or $ROBUSTAL_DATA) or run `robustal data download {NAME}`"
        )
    return read_archive(archive, names)


def read_archive(archive: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The raw bytes of batches `names` in the ``cifar-10-python.tar.gz`` at `archive`."""
    # tarfile, gzip and zlib each raise their own errors on damaged bytes
    with decoding_errors(f"{archive}: cannot read it as a gzip tar archive ({{reason}}); download it again"):
        with tarfile.open(archive, "r:gz") as tar:
            members = {Path(member.name).name: member for member in tar.getmembers() if member.isfile()}
            missing = [name for name in names if name not in members]
            if missing:
                raise DataError(f"{archive}: the archive lacks {', '.join(missing)} (expected {FOLDER}/<batch>)")
            return {name: tar.extractfile(members[name]).read() for name in names}


def concatenate(splits: list[Split]) -> Split:
    return Split(torch.cat([split.images for split in splits]), torch.cat([split.labels for split in splits]))


def load_cifar10(data_root: Path) -> ImageDataset:
    """CIFAR-10: 50,000 train; the first 5,000 test images validate, the other 5,000 test.

    Test batches with fewer images (small test files) split their test images in half.
    """
    folder = Path(data_root) / NAME
    contents = read_batches(folder, (*TRAIN_BATCHES, TEST_BATCH))
    source = folder / FOLDER if (folder / FOLDER).is_dir() else folder / ARCHIVE
    splits = {name: parse_cifar_batch(content, f"{source}:{name}") for name, content in contents.items()}
    train = concatenate([splits[name] for name in TRAIN_BATCHES])
    test = splits[TEST_BATCH]
    return split_validation(NAME, train, test, num_classes=10, validation_size=min(VALIDATION_SIZE, len(test) // 2))


register_dataset(
    DatasetInfo(
        name=NAME,
        loader=load_cifar10,
        default_model="resnet18",
        native_size=32,
        default_size=32,
        description="CIFAR-10, 50,000 train; test split: first 5,000 validation, last 5,000 test",
        augment=True,
    )
)
