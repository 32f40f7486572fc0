"""The IDX reader of MNIST / Fashion-MNIST: good files, corrupt headers, truncation, checksums."""

import gzip
import hashlib

import numpy as np
import pytest
import torch

from robustal.data.idx import load_idx, parse_idx, read_idx_bytes, write_idx
from robustal.errors import DataError

IMAGES = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
LABELS = np.array([7, 0, 9], dtype=np.uint8)


@pytest.mark.parametrize("compress", [True, False])
def test_written_files_read_back_identically(tmp_path, compress):
    path = tmp_path / ("images.gz" if compress else "images")
    write_idx(path, IMAGES, compress=compress)
    loaded = load_idx(path, ndim=3)
    assert loaded.dtype == torch.uint8 and loaded.shape == (2, 3, 4)
    np.testing.assert_array_equal(loaded.numpy(), IMAGES)
    np.testing.assert_array_equal(load_idx(_write(tmp_path / "labels", LABELS), ndim=1).numpy(), LABELS)


def _write(path, array):
    write_idx(path, array, compress=False)
    return path


def test_header_encodes_magic_and_shape(tmp_path):
    content = read_idx_bytes(_write(tmp_path / "images", IMAGES))
    assert content[:4] == bytes([0, 0, 8, 3])  # unsigned bytes, 3 dimensions
    assert [int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(3)] == [2, 3, 4]
    assert len(content) == 16 + IMAGES.size


def test_wrong_magic_number_is_named(tmp_path):
    content = bytearray(read_idx_bytes(_write(tmp_path / "labels", LABELS)))
    content[3] = 0x03  # claims 3 dimensions
    with pytest.raises(DataError, match=r"magic number 0x00000803, expected 0x00000801"):
        parse_idx(bytes(content), ndim=1, source="labels-file")


def test_images_file_read_as_labels_is_rejected(tmp_path):
    path = tmp_path / "images.gz"
    write_idx(path, IMAGES)
    with pytest.raises(DataError, match=rf"{path}: IDX magic number 0x00000803, expected 0x00000801"):
        load_idx(path, ndim=1)


def test_truncated_content_reports_announced_and_actual_size(tmp_path):
    content = read_idx_bytes(_write(tmp_path / "images", IMAGES))
    with pytest.raises(DataError, match=r"announces shape \(2, 3, 4\) \(40 bytes\) but the file holds 35 bytes"):
        parse_idx(content[:-5], ndim=3, source="images")


def test_too_short_for_a_header(tmp_path):
    with pytest.raises(DataError, match="7 bytes is too short for an IDX header with 1 dimensions"):
        parse_idx(b"\x00\x00\x08\x01\x00\x00\x00", ndim=1)


def test_truncated_gzip_file(tmp_path):
    path = tmp_path / "images.gz"
    write_idx(path, np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match=rf"cannot read {path}.*download it again"):
        load_idx(path, ndim=3)


def test_checksum_mismatch_names_both_digests(tmp_path):
    path = _write(tmp_path / "labels", LABELS)
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_idx(path, ndim=1, sha256=actual).tolist() == LABELS.tolist()
    with pytest.raises(DataError, match=rf"sha256 of the decompressed content is {actual}, expected 0+"):
        load_idx(path, ndim=1, sha256="0" * 64)


def test_checksum_is_of_the_decompressed_content(tmp_path):
    path = tmp_path / "labels.gz"
    write_idx(path, LABELS)
    content_sha256 = hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()
    assert load_idx(path, ndim=1, sha256=content_sha256).tolist() == LABELS.tolist()


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="missing dataset file"):
        load_idx(tmp_path / "absent.gz", ndim=1)
