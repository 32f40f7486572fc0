"""Small dataset files in the official formats, for the data tests (a plain module: the fixtures
that use them are in this folder's conftest.py): MNIST's gzip'd IDX files, SVHN's .mat arrays,
CIFAR-10's pickled batches and their archive, and a damaged copy of any file."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np

from robustal.data.idx import read_idx_bytes, write_idx

IDX_COUNTS = {"train": 12, "t10k": 6}  # images per split of a generated MNIST-like dataset


def write_idx_dataset(folder: Path, seed: int = 0, compress: bool = True) -> dict[str, Path]:
    """The four files of an MNIST-like dataset (random 28x28 images, random labels; `IDX_COUNTS`
    of each split), named as the originals, in `folder`; returns stem -> path."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    paths = {}
    for prefix, count in IDX_COUNTS.items():
        for stem, array in (
            (f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28))),
            (f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, count)),
        ):
            paths[stem] = folder / f"{stem}{suffix}"
            write_idx(paths[stem], array, compress)
    return paths


def content_sha256(paths: dict[str, Path]) -> dict[str, str]:
    """stem -> sha256 of each IDX file's decompressed content: the form of `robustal.data.mnist.IDX_SHA256`."""
    return {stem: hashlib.sha256(read_idx_bytes(path)).hexdigest() for stem, path in paths.items()}


def damaged(content: bytes) -> bytes:
    """`content` with one byte flipped: the 12th from the end, in a gzip file the end of the
    deflate stream (before the 8-byte trailer; the header holds the file name and time)."""
    flipped = bytearray(content)
    flipped[-12] ^= 0xFF
    return bytes(flipped)


def svhn_arrays(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random SVHN-format arrays: X uint8 (32, 32, 3, count), y (count, 1) in 1..10 (10 = digit 0)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (32, 32, 3, count), dtype=np.uint8)
    labels = (np.arange(count) % 10 + 1).astype(np.uint8).reshape(-1, 1)  # 1..10, every class
    return images, labels


def cifar_batch(count: int, seed: int) -> dict:
    """A CIFAR-10 python batch: dict with b'data' uint8 (count, 3072), b'labels' list of ints."""
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": f"batch {seed}".encode(),
        b"labels": [int(label) for label in rng.integers(0, 10, count)],
        b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
        b"filenames": [f"image_{seed}_{index}.png".encode() for index in range(count)],
    }


CIFAR_PER_BATCH, CIFAR_TEST = 4, 6


def cifar_batches() -> dict[str, dict]:
    """Five small training batches and a test batch, by their file names."""
    batches = {f"data_batch_{index}": cifar_batch(CIFAR_PER_BATCH, index) for index in range(1, 6)}
    batches["test_batch"] = cifar_batch(CIFAR_TEST, 6)
    return batches


def write_cifar_archive(path: Path, contents: dict[str, bytes]) -> None:
    """A ``cifar-10-python.tar.gz`` holding ``cifar-10-batches-py/<name>`` for each entry."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in contents.items():
            member = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))
