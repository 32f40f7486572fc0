"""Verified downloads of the official dataset files, and what the data root holds.

`download_dataset` fetches each file of a dataset into ``<data root>/<dataset>/``: it streams
into a temporary file beside the final one, checks the published md5, and only then renames
it (readable like any file the user writes). A response larger than the file's cap
(`MAX_DOWNLOAD_BYTES`) is stopped; on that, a mismatch or a network error the temporary file
is deleted, nothing is left under the final name, and the `DataError` names the URL (and the
expected checksum). Mirrors are tried in order; ``mirror=`` puts ``<mirror>/<dataset>/<file>``
first (an institutional copy).

`dataset_status` says whether a dataset is ``verified`` (its checksums match), ``present``
(files found, checksums differ or cannot be checked), ``corrupt`` (a file cannot be decoded)
or ``missing``. MNIST and Fashion-MNIST are identified by the sha256 of their decompressed content (`robustal.data.mnist.IDX_SHA256`),
so recompressed copies count as verified; the others by the md5 of the official files.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from robustal.data import cifar, svhn
from robustal.data.idx import read_idx_bytes
from robustal.data.mnist import IDX_SHA256, find_idx_file
from robustal.data.paths import resolve_data_root
from robustal.data.registry import available_datasets
from robustal.errors import ConfigError, DataError, decoding_errors, unknown_name_error

CHUNK_SIZE = 1 << 20
TIMEOUT_SECONDS = 60.0
# No official file is larger than 200 MB (SVHN train 182 MB, CIFAR-10 170 MB): a server sending
# more is wrong or hostile, and must not fill the disk before the md5 check.
MAX_DOWNLOAD_BYTES = 1 << 30


@dataclass(frozen=True)
class RemoteFile:
    """An official file: its name in ``<data root>/<dataset>/``, where to get it (tried in
    order), the md5 its publishers list and the most bytes a download of it may take."""

    filename: str
    urls: tuple[str, ...]
    md5: str
    max_bytes: int = MAX_DOWNLOAD_BYTES


def _mirrored(mirrors: Sequence[str], checksums: dict[str, str]) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(name, tuple(base + name for base in mirrors), md5) for name, md5 in checksums.items())


MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
FASHION_MNIST_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/"

# Official files and their published md5 (the values torchvision lists).
DOWNLOADS: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": _mirrored(
        MNIST_MIRRORS,
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion-mnist": _mirrored(
        FASHION_MNIST_MIRRORS,
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    "svhn": _mirrored(
        (SVHN_URL,),
        {svhn.FILES["train"]: "e26dedcc434d2e4c54c9b2d4a06d8373", svhn.FILES["test"]: "eb5a983be6a315427106f1b164d9cef3"},
    ),
    "cifar10": _mirrored((CIFAR10_URL,), {cifar.ARCHIVE: "c58f30108f718f92721af3b95e74349a"}),
}

# md5 of the batches inside the CIFAR-10 archive (an extracted folder is verified against these).
CIFAR10_BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}

BUNDLED = {"digits": "bundled with scikit-learn, nothing to download"}


def file_md5(path: Path) -> str:
    """The md5 hex digest of the file at `path`, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def remote_files(name: str) -> tuple[RemoteFile, ...]:
    """The official files of dataset `name`; `ConfigError` listing the downloadable ones otherwise."""
    if name in BUNDLED:
        raise ConfigError(f"{name} is {BUNDLED[name]}")
    if name not in DOWNLOADS:
        raise unknown_name_error("downloadable dataset", name, sorted(DOWNLOADS))
    return DOWNLOADS[name]


def _default_file_mode() -> int:
    """The mode open() gives a new file: 0o666 less the umask (a temporary file gets 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _too_large(url: str, limit: int, final: Path) -> DataError:
    return DataError(
        f"{url}: the server sends more than {limit} bytes, more than this file can be; the download was "
        f"stopped and nothing was written to {final}"
    )


def _fetch(remote: RemoteFile, url: str, final: Path, progress: Progress | None, timeout: float) -> None:
    """Stream `url` into a temporary file beside `final`, check size and md5, rename to `final`."""
    handle = tempfile.NamedTemporaryFile(dir=final.parent, prefix=f".{final.name}.", suffix=".part", delete=False)
    partial = Path(handle.name)
    received = 0
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with handle, urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length", "")
            announced = int(length) if length.isdigit() else None
            if announced is not None and announced > remote.max_bytes:
                raise _too_large(url, remote.max_bytes, final)
            task = progress.add_task(final.name, total=announced) if progress else None
            while chunk := response.read(CHUNK_SIZE):
                received += len(chunk)
                if received > remote.max_bytes:  # a server may send more than it announced
                    raise _too_large(url, remote.max_bytes, final)
                handle.write(chunk)
                digest.update(chunk)
                if progress is not None:
                    progress.update(task, advance=len(chunk))
        actual = digest.hexdigest()
        if actual != remote.md5:
            raise DataError(
                f"{url}: md5 of the downloaded file is {actual}, expected {remote.md5} (the published checksum); "
                f"the download is corrupt or the server's file changed; it was deleted and nothing was written to {final}"
            )
        os.chmod(partial, _default_file_mode())  # readable like any file the user writes
        os.replace(partial, final)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        raise DataError(f"{url}: download failed ({error}); nothing was written to {final}") from error
    finally:
        partial.unlink(missing_ok=True)


def download_file(
    remote: RemoteFile, folder: Path, progress: Progress | None = None, timeout: float = TIMEOUT_SECONDS
) -> Path:
    """Download `remote` into `folder` (created if needed), trying its URLs in order; returns
    the verified file's path. `DataError` naming every URL tried and why it failed."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / remote.filename
    failures = []
    for url in remote.urls:
        try:
            _fetch(remote, url, final, progress, timeout)
            return final
        except DataError as error:
            failures.append(str(error))
    raise DataError(f"could not download {remote.filename}: " + " | ".join(failures))


def _already_verified(name: str, path: Path, remote: RemoteFile) -> bool:
    if not path.is_file():
        return False
    if file_md5(path) == remote.md5:
        return True
    content_checksums = IDX_SHA256.get(name, {})
    stem = path.name.removesuffix(".gz")
    if stem not in content_checksums:
        return False
    try:
        return hashlib.sha256(read_idx_bytes(path)).hexdigest() == content_checksums[stem]
    except DataError:
        return False


def download_dataset(
    name: str,
    data_root: str | os.PathLike | None = None,
    files: Sequence[RemoteFile] | None = None,
    mirror: str | None = None,
    force: bool = False,
    show_progress: bool = False,
    timeout: float = TIMEOUT_SECONDS,
) -> list[Path]:
    """Download the official files of dataset `name` into ``<data root>/<name>/``.

    Files already there and verified are kept unless `force`. `files` replaces the table
    (`DOWNLOADS`) entries, e.g. to fetch from elsewhere with other checksums; `mirror` (a base
    URL) is tried before each file's own URLs as ``<mirror>/<name>/<file>``. `show_progress`
    draws a rich progress bar. Returns the paths of the dataset's files.
    """
    remotes = tuple(files) if files is not None else remote_files(name)
    if mirror:
        remotes = tuple(
            replace(r, urls=(f"{mirror.rstrip('/')}/{name}/{r.filename}", *r.urls)) for r in remotes
        )
    folder = resolve_data_root(data_root) / name
    progress = (
        Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        if show_progress
        else None
    )
    paths = []
    if progress is not None:
        progress.start()
    try:
        for remote in remotes:
            path = folder / remote.filename
            if force or not _already_verified(name, path, remote):
                download_file(remote, folder, progress, timeout)
            paths.append(path)
    finally:
        if progress is not None:
            progress.stop()
    return paths


@dataclass(frozen=True)
class DatasetStatus:
    """What the data root holds of a dataset: ``state`` is ``verified``, ``present``, ``corrupt``,
    ``missing`` or ``unknown`` (no checks known); ``detail`` says why."""

    name: str
    state: str
    detail: str


def _idx_status(name: str, root: Path) -> DatasetStatus:
    missing, mismatched, corrupt = [], [], []
    for stem, sha256 in IDX_SHA256[name].items():
        try:
            path = find_idx_file(name, stem, root)
        except DataError:
            missing.append(f"{stem}.gz")
            continue
        try:
            if hashlib.sha256(read_idx_bytes(path)).hexdigest() != sha256:
                mismatched.append(path.name)
        except DataError as error:
            corrupt.append(str(error))
    if missing:
        return DatasetStatus(name, "missing", f"missing {', '.join(missing)} in {root / name}")
    if corrupt:
        return _corrupt_status(name, corrupt)
    if mismatched:
        return DatasetStatus(name, "present", f"decompressed content differs from the original: {', '.join(mismatched)}")
    return DatasetStatus(name, "verified", f"sha256 of the decompressed IDX content matches ({root / name})")


def _corrupt_status(name: str, problems: list[str]) -> DatasetStatus:
    return DatasetStatus(name, "corrupt", "; ".join(problems) + f" (`robustal data download {name} --force`)")


def decode_file(name: str, path: Path) -> None:
    """Decode file `path` of dataset `name` (SVHN or CIFAR-10) completely: `DataError` when damaged."""
    if name == svhn.NAME:
        svhn.read_svhn_mat(path)
    elif path.name == cifar.ARCHIVE:
        for batch, content in cifar.read_archive(path, (*cifar.TRAIN_BATCHES, cifar.TEST_BATCH)).items():
            cifar.parse_cifar_batch(content, f"{path}:{batch}")
    else:
        with decoding_errors(f"cannot read {path}: {{reason}}"):
            content = path.read_bytes()
        cifar.parse_cifar_batch(content, str(path))


def _md5_status(name: str, folder: Path, expected: dict[str, str]) -> DatasetStatus:
    missing = [filename for filename in expected if not (folder / filename).is_file()]
    if missing:
        return DatasetStatus(name, "missing", f"missing {', '.join(missing)} in {folder}")
    mismatched, corrupt = [], []
    for filename, md5 in expected.items():
        # a file that differs is decoded: damaged (corrupt) or only another version (present)?
        try:
            with decoding_errors(f"cannot read {folder / filename}: {{reason}}"):
                if file_md5(folder / filename) == md5:
                    continue
            decode_file(name, folder / filename)
            mismatched.append(filename)
        except DataError as error:
            corrupt.append(str(error))
    if corrupt:
        return _corrupt_status(name, corrupt)
    if mismatched:
        return DatasetStatus(name, "present", f"md5 differs from the published one: {', '.join(mismatched)} in {folder}")
    return DatasetStatus(name, "verified", f"md5 of {', '.join(expected)} matches ({folder})")


def dataset_status(name: str, data_root: str | os.PathLike | None = None) -> DatasetStatus:
    """Whether dataset `name` is verified, present or missing under the data root."""
    root = resolve_data_root(data_root)
    if name in BUNDLED:
        return DatasetStatus(name, "present", BUNDLED[name])
    if name in IDX_SHA256:
        return _idx_status(name, root)
    if name == cifar.NAME and (root / name / cifar.FOLDER).is_dir() and not (root / name / cifar.ARCHIVE).is_file():
        return _md5_status(name, root / name / cifar.FOLDER, CIFAR10_BATCH_MD5)
    if name in DOWNLOADS:
        return _md5_status(name, root / name, {remote.filename: remote.md5 for remote in DOWNLOADS[name]})
    return DatasetStatus(name, "unknown", "no file checks known for this dataset")


def all_statuses(data_root: str | os.PathLike | None = None) -> list[DatasetStatus]:
    """`dataset_status` of every registered dataset, in name order."""
    return [dataset_status(name, data_root) for name in available_datasets()]
