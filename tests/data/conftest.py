"""Fixtures for the data tests: small MNIST / SVHN / CIFAR-10 files in their real formats (written
by dataset_files.py), and a local HTTP server (127.0.0.1 only) that the download tests fetch from."""

from __future__ import annotations

import contextlib
import functools
import pickle
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import scipy.io

from dataset_files import cifar_batches, content_sha256, svhn_arrays, write_cifar_archive, write_idx_dataset
from robustal.data.mnist import IDX_SHA256

SVHN_TRAIN, SVHN_TEST = 12, 8


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


@pytest.fixture
def idx_root(tmp_path, monkeypatch) -> Path:
    """A data root with small generated ``mnist/`` and ``fashion-mnist/`` files in the official
    format (gzip'd IDX, the original names), and robustal's table of content checksums
    (`IDX_SHA256`) set to theirs for the test: robustal takes them for the real files."""
    root = tmp_path / "idx-root"
    for seed, name in enumerate(list(IDX_SHA256)):
        monkeypatch.setitem(IDX_SHA256, name, content_sha256(write_idx_dataset(root / name, seed)))
    return root


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
