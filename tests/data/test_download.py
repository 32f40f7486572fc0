"""Verified downloads through the real code path, from a local HTTP server on 127.0.0.1: small
generated MNIST files in the official format as the good copy (`idx_root`: robustal's checksum
table holds theirs), a deliberately corrupted copy, and `data list` states. Only the check that
the table's checksums are the real files' needs the real files (../shared/data)."""

import hashlib
import os
import shutil
import stat
from dataclasses import replace

import numpy as np
import pytest
import scipy.io

from robustal.data import download
from robustal.data.download import DOWNLOADS, RemoteFile, dataset_status, download_dataset, file_md5
from robustal.data.idx import write_idx
from robustal.errors import ConfigError, DataError

from dataset_files import damaged

LABELS = "train-labels-idx1-ubyte.gz"


def local_files(root, base_url, names=None):
    """The MNIST table entries served from `base_url`, with the md5 of the files under
    `root` (not the official .gz files: the published md5 is not theirs)."""
    return [
        RemoteFile(remote.filename, (f"{base_url}/mnist/{remote.filename}",), file_md5(root / "mnist" / remote.filename))
        for remote in DOWNLOADS["mnist"]
        if names is None or remote.filename in names
    ]


def test_table_lists_the_published_checksums():
    assert {remote.filename: remote.md5 for remote in DOWNLOADS["cifar10"]} == {
        "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"
    }
    assert [remote.md5 for remote in DOWNLOADS["svhn"]] == ["e26dedcc434d2e4c54c9b2d4a06d8373", "eb5a983be6a315427106f1b164d9cef3"]
    mnist = {remote.filename: remote for remote in DOWNLOADS["mnist"]}
    assert mnist["train-images-idx3-ubyte.gz"].md5 == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert mnist["train-images-idx3-ubyte.gz"].urls[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"
    assert len(DOWNLOADS["fashion-mnist"]) == 4


def test_download_verifies_and_renames(idx_root, http_server, tmp_path):
    with http_server(idx_root) as url:
        paths = download_dataset("mnist", tmp_path, files=local_files(idx_root, url))
    assert sorted(path.name for path in (tmp_path / "mnist").iterdir()) == sorted(remote.filename for remote in DOWNLOADS["mnist"])
    assert all(path.read_bytes() == (idx_root / "mnist" / path.name).read_bytes() for path in paths)
    assert dataset_status("mnist", tmp_path).state == "verified"


def test_corrupted_download_is_deleted_and_names_url_and_checksum(idx_root, http_server, tmp_path):
    corrupted = tmp_path / "corrupted"
    (corrupted / "mnist").mkdir(parents=True)
    content = damaged((idx_root / "mnist" / LABELS).read_bytes())
    (corrupted / "mnist" / LABELS).write_bytes(content)
    target = tmp_path / "root"
    with http_server(corrupted) as url:
        (remote,) = local_files(idx_root, url, {LABELS})
        with pytest.raises(DataError) as error:
            download_dataset("mnist", target, files=[remote])
    message = str(error.value)
    assert remote.urls[0] in message and f"expected {remote.md5}" in message
    assert f"md5 of the downloaded file is {hashlib.md5(content).hexdigest()}" in message
    assert list((target / "mnist").iterdir()) == []  # no partial file, nothing under the final name


def test_a_damaged_file_in_the_data_root_is_downloaded_again(idx_root, http_server, tmp_path):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / LABELS).write_bytes(damaged((idx_root / "mnist" / LABELS).read_bytes()))  # cannot be decompressed
    with http_server(idx_root) as url:
        (path,) = download_dataset("mnist", tmp_path, files=local_files(idx_root, url, {LABELS}))
    assert path.read_bytes() == (idx_root / "mnist" / LABELS).read_bytes()


def test_downloaded_files_are_readable_like_any_other(idx_root, http_server, tmp_path):
    previous = os.umask(0o022)
    try:
        with http_server(idx_root) as url:
            (path,) = download_dataset("mnist", tmp_path, files=local_files(idx_root, url, {LABELS}))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not the 0o600 of a temporary file


def test_a_download_larger_than_its_cap_is_stopped(idx_root, http_server, tmp_path):
    with http_server(idx_root) as url:
        (remote,) = local_files(idx_root, url, {LABELS})
        with pytest.raises(DataError, match=rf"{remote.urls[0]}: the server sends more than 20 bytes"):
            download_dataset("mnist", tmp_path, files=[replace(remote, max_bytes=20)])
    assert list((tmp_path / "mnist").iterdir()) == []
    assert all(remote.max_bytes == download.MAX_DOWNLOAD_BYTES for remote in DOWNLOADS["svhn"])


def test_the_published_checksum_rejects_any_other_copy(idx_root, http_server, tmp_path):
    """The real table's md5 of the official .gz: any other file (here a generated one) fails it."""
    (official,) = [remote for remote in DOWNLOADS["mnist"] if remote.filename == LABELS]
    with http_server(idx_root) as url:
        served = RemoteFile(LABELS, (f"{url}/mnist/{LABELS}",), official.md5)
        with pytest.raises(DataError, match=f"expected {official.md5} \\(the published checksum\\)"):
            download_dataset("mnist", tmp_path, files=[served])
    assert not (tmp_path / "mnist" / LABELS).exists()


def test_missing_file_on_the_server(http_server, tmp_path):
    with http_server(tmp_path) as url:
        remote = RemoteFile("test_32x32.mat", (f"{url}/nothing/test_32x32.mat",), "0" * 32)
        with pytest.raises(DataError, match=rf"{remote.urls[0]}: download failed \(HTTP Error 404"):
            download_dataset("svhn", tmp_path / "root", files=[remote])
    assert list((tmp_path / "root" / "svhn").iterdir()) == []


def test_mirror_is_tried_first_then_the_next_url(idx_root, http_server, tmp_path):
    (remote,) = local_files(idx_root, "http://unused", {LABELS})
    (tmp_path / "empty").mkdir()
    with http_server(idx_root) as good, http_server(tmp_path / "empty") as bad:
        fallback = RemoteFile(LABELS, (f"{good}/mnist/{LABELS}",), remote.md5)
        download_dataset("mnist", tmp_path / "a", files=[fallback], mirror=bad)  # mirror 404s, own URL works
        only_mirror = RemoteFile(LABELS, (f"{bad}/mnist/{LABELS}",), remote.md5)
        download_dataset("mnist", tmp_path / "b", files=[only_mirror], mirror=good + "/")  # mirror works
        with pytest.raises(DataError, match=rf"could not download {LABELS}: {bad}/mnist/{LABELS}: .*404.* \| {bad}/mnist/{LABELS}"):
            download_dataset("mnist", tmp_path / "c", files=[only_mirror], mirror=bad)
    for folder in ("a", "b"):
        assert (tmp_path / folder / "mnist" / LABELS).read_bytes() == (idx_root / "mnist" / LABELS).read_bytes()


def test_verified_files_are_not_downloaded_again(idx_root, tmp_path):
    (tmp_path / "mnist").mkdir()
    shutil.copy(idx_root / "mnist" / LABELS, tmp_path / "mnist" / LABELS)
    dead = RemoteFile(LABELS, ("http://127.0.0.1:9/unreachable",), DOWNLOADS["mnist"][1].md5)
    # the official md5 differs, but the decompressed content is verified: nothing to fetch
    assert download_dataset("mnist", tmp_path, files=[dead], timeout=5) == [tmp_path / "mnist" / LABELS]
    with pytest.raises(DataError, match="unreachable: download failed"):
        download_dataset("mnist", tmp_path, files=[dead], force=True, timeout=5)
    assert (tmp_path / "mnist" / LABELS).read_bytes() == (idx_root / "mnist" / LABELS).read_bytes()


def test_unknown_and_bundled_datasets_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown downloadable dataset 'imagenet'; valid choices: cifar10, fashion-mnist, mnist, svhn"):
        download_dataset("imagenet", tmp_path)
    with pytest.raises(ConfigError, match="digits is bundled with scikit-learn"):
        download_dataset("digits", tmp_path)


def test_the_checksum_table_is_the_real_files_content(data_root):
    """The real files (../shared/data) are verified: the table holds the sha256 of their content."""
    assert dataset_status("mnist", data_root).state == "verified"
    assert dataset_status("fashion-mnist", data_root).state == "verified"


def test_status_of_idx_datasets(idx_root, tmp_path):
    assert dataset_status("mnist", idx_root).state == "verified"
    assert dataset_status("fashion-mnist", idx_root).state == "verified"
    missing = dataset_status("mnist", tmp_path)
    assert missing.state == "missing" and "train-images-idx3-ubyte.gz" in missing.detail
    (tmp_path / "mnist").mkdir()
    for stem in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        write_idx(tmp_path / "mnist" / f"{stem}.gz", np.zeros((2, 28, 28), np.uint8))  # valid IDX, other content
    for stem in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(idx_root / "mnist" / f"{stem}.gz", tmp_path / "mnist")
    present = dataset_status("mnist", tmp_path)
    assert present.state == "present"
    assert "differs from the original: train-images-idx3-ubyte.gz, t10k-images-idx3-ubyte.gz" in present.detail


def test_status_of_md5_datasets(svhn_root, cifar_folder_root, cifar_archive_root, tmp_path, monkeypatch):
    root, _ = svhn_root
    status = dataset_status("svhn", root)
    assert status.state == "present" and "md5 differs from the published one: train_32x32.mat, test_32x32.mat" in status.detail
    assert dataset_status("svhn", tmp_path / "nowhere").state == "missing"
    assert dataset_status("cifar10", cifar_archive_root).state == "present"
    assert dataset_status("cifar10", cifar_folder_root).detail.startswith("md5 differs from the published one: data_batch_1")
    # with the checksums of these small files, the same files are verified
    archive = cifar_archive_root / "cifar10" / "cifar-10-python.tar.gz"
    monkeypatch.setitem(DOWNLOADS, "cifar10", (RemoteFile(archive.name, (), file_md5(archive)),))
    assert dataset_status("cifar10", cifar_archive_root).state == "verified"
    batches = cifar_folder_root / "cifar10" / "cifar-10-batches-py"
    monkeypatch.setattr(download, "CIFAR10_BATCH_MD5", {path.name: file_md5(path) for path in batches.iterdir()})
    assert dataset_status("cifar10", cifar_folder_root).state == "verified"
    assert dataset_status("digits", tmp_path).state == "present"


def test_svhn_download_of_a_small_file_in_the_real_format(http_server, tmp_path):
    served = tmp_path / "served" / "svhn"
    served.mkdir(parents=True)
    scipy.io.savemat(served / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 3), np.uint8), "y": np.ones((3, 1), np.uint8)})
    md5 = file_md5(served / "test_32x32.mat")
    with http_server(tmp_path / "served") as url:
        (path,) = download_dataset("svhn", tmp_path / "root", files=[RemoteFile("test_32x32.mat", (f"{url}/svhn/test_32x32.mat",), md5)])
    assert scipy.io.loadmat(path)["X"].shape == (32, 32, 3, 3)
