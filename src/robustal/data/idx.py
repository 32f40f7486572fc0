"""Reader for the IDX format of MNIST and Fashion-MNIST (optionally gzip-compressed)."""

from __future__ import annotations

import gzip
import hashlib
import math
from pathlib import Path

import numpy as np
import torch

from robustal.errors import DataError, decoding_errors

_UBYTE = 0x08
_MAGIC_BY_NDIM = {1: 0x00000801, 3: 0x00000803}


def read_idx_bytes(path: Path) -> bytes:
    """The decompressed content of an IDX file (``.gz`` is decompressed)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing dataset file {path}")
    # a damaged deflate stream raises zlib.error, a truncated one EOFError, a foreign file OSError ...
    with decoding_errors(f"cannot read {path}: {{reason}} (the file is damaged, truncated or not gzip; download it again)"):
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()


def parse_idx(content: bytes, ndim: int, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes of unsigned bytes with `ndim` dimensions into a uint8 array.

    Raises `DataError` naming `source` when the magic number, the dimensions or the size
    do not match what the header announces.
    """
    expected_magic = _MAGIC_BY_NDIM[ndim]
    if len(content) < 4 + 4 * ndim:
        raise DataError(f"{source}: {len(content)} bytes is too short for an IDX header with {ndim} dimensions")
    magic = int.from_bytes(content[:4], "big")
    if magic != expected_magic:
        raise DataError(
            f"{source}: IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    header = 4 + 4 * ndim
    expected_size = header + math.prod(shape)  # exact: numpy's product of huge dimensions overflows
    if len(content) != expected_size:
        raise DataError(
            f"{source}: header announces shape {shape} ({expected_size} bytes) but the file holds {len(content)} bytes"
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape)


def load_idx(path: Path, ndim: int, sha256: str | None = None) -> torch.Tensor:
    """Read, parse and (if `sha256` is given) verify an IDX file; returns a uint8 tensor."""
    content = read_idx_bytes(path)
    array = parse_idx(content, ndim, source=str(path))
    if sha256 is not None:
        actual = hashlib.sha256(content).hexdigest()
        if actual != sha256:
            raise DataError(
                f"{path}: sha256 of the decompressed content is {actual}, expected {sha256}; "
                "the file is corrupt or another version: download it again"
            )
    return torch.from_numpy(array.copy())


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    """Write a uint8 array as an IDX file (used by tests and by users converting data)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = _MAGIC_BY_NDIM[array.ndim].to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    content = header + array.tobytes()
    path = Path(path)
    if compress:
        with gzip.open(path, "wb") as handle:
            handle.write(content)
    else:
        path.write_bytes(content)
