"""Fixtures for the data tests: small SVHN / CIFAR-10 files in their real formats, and a local
HTTP server (127.0.0.1 only) that the download tests fetch from."""

from __future__ import annotations

import contextlib
import functools
import io
import pickle
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import scipy.io

SVHN_TRAIN, SVHN_TEST = 12, 8
CIFAR_PER_BATCH, CIFAR_TEST = 4, 6


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@pytest.fixture
def http_server(monkeypatch):
    """`serve(folder)`: a context manager serving `folder` at the yielded http://127.0.0.1:PORT.

    Each server runs in a daemon thread and is shut down when its block ends.
    """
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    @contextlib.contextmanager
    def serve(folder: Path):
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    return serve


def svhn_arrays(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random SVHN-format arrays: X uint8 (32, 32, 3, count), y (count, 1) in 1..10 (10 = digit 0)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (32, 32, 3, count), dtype=np.uint8)
    labels = (np.arange(count) % 10 + 1).astype(np.uint8).reshape(-1, 1)  # 1..10, every class
    return images, labels


@pytest.fixture
def svhn_root(tmp_path) -> tuple[Path, dict]:
    """A data root with small ``svhn/train_32x32.mat`` and ``test_32x32.mat`` (scipy.io.savemat,
    like the originals); returns the root and the arrays written."""
    folder = tmp_path / "svhn"
    folder.mkdir()
    arrays = {"train": svhn_arrays(SVHN_TRAIN, 0), "test": svhn_arrays(SVHN_TEST, 1)}
    for split, (images, labels) in arrays.items():
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": images, "y": labels})
    return tmp_path, arrays


def cifar_batch(count: int, seed: int) -> dict:
    """A CIFAR-10 python batch: dict with b'data' uint8 (count, 3072), b'labels' list of ints."""
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": f"batch {seed}".encode(),
        b"labels": [int(label) for label in rng.integers(0, 10, count)],
        b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
        b"filenames": [f"image_{seed}_{index}.png".encode() for index in range(count)],
    }


def cifar_batches() -> dict[str, dict]:
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


@pytest.fixture
def cifar_files(tmp_path) -> tuple[dict[str, dict], dict[str, bytes]]:
    """Small CIFAR-10 batches (the dicts, and their pickles as the original protocol 2)."""
    batches = cifar_batches()
    return batches, {name: pickle.dumps(batch, protocol=2) for name, batch in batches.items()}


@pytest.fixture
def cifar_folder_root(tmp_path, cifar_files) -> Path:
    """A data root with the extracted ``cifar10/cifar-10-batches-py/`` folder."""
    folder = tmp_path / "folder-root" / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, content in cifar_files[1].items():
        (folder / name).write_bytes(content)
    return tmp_path / "folder-root"


@pytest.fixture
def cifar_archive_root(tmp_path, cifar_files) -> Path:
    """A data root with ``cifar10/cifar-10-python.tar.gz``."""
    folder = tmp_path / "archive-root" / "cifar10"
    folder.mkdir(parents=True)
    write_cifar_archive(folder / "cifar-10-python.tar.gz", cifar_files[1])
    return tmp_path / "archive-root"


@pytest.fixture
def write_archive():
    """`write_cifar_archive(path, {name: bytes})`, for tests that build their own archive."""
    return write_cifar_archive
