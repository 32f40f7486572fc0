"""Image files decoded once into uint8 memory-mapped arrays, reused until the files change.

A listing of image files (`ImageListing`: a folder or a CSV, see `robustal.data.folder`) is
decoded at one image size into ``DATA_ROOT/image-cache/<source>-<id>/<size>px-<key>/``:
``train.npy``, ``validation.npy`` and ``test.npy`` (uint8, N x C x H x W, opened with
``numpy.load(mmap_mode="c")``) and ``index.json`` (every kept file's path, sha256 and label in
row order, the exact duplicates left out, the unreadable files skipped with the reason). The key
hashes the file list, sizes, modification times and the image size: a changed, added or removed
file builds a new cache (the stale one of that size is deleted), an unchanged listing decodes
nothing. A cache is built in a temporary folder and renamed into place when complete, so an
interrupted build leaves nothing half-written and concurrent runs share one result.

Splits: files marked ``test`` (a ``test/`` folder, a CSV's split column) are the held-out set,
the first half of it (classes spread evenly, seeded) validates, the rest tests. Without them,
`HELD_OUT` of every class (seed `SPLIT_SEED`) validates and as many test; the rest trains.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from robustal.data.dataset import ImageDataset, Split
from robustal.data.images import decode_image, image_mode, is_grayscale
from robustal.errors import DataError, decoding_errors, error_reason

CACHE_FOLDER = "image-cache"
INDEX_FILE = "index.json"
FORMAT = 1  # bump when the decoding or the layout changes: old caches are then rebuilt
SPLITS = ("train", "validation", "test")
HELD_OUT = 0.1  # of each class validates, as much tests, when no file is marked test
SPLIT_SEED = 0
SHOWN = 10  # files named in a warning or error; the index lists them all


class SkippedImagesWarning(UserWarning):
    """Some image files of a dataset were left out: unreadable, or exact copies of another."""


@dataclass(frozen=True)
class ImageFile:
    """One listed image file: where it is, how the index names it, its class and declared split."""

    path: Path
    name: str  # relative to the folder, or as written in the CSV
    label: int
    split: str | None  # "train" or "test" as the folder or CSV says; None: held out here
    size: int = -1  # bytes; -1: the file is missing
    mtime_ns: int = 0


@dataclass(frozen=True)
class ImageListing:
    """The image files of a dataset, with its classes (label i is ``classes[i]``)."""

    kind: str  # "folder" or "csv"
    source: Path
    classes: tuple[str, ...]
    places: tuple[str, ...]  # where each class's images are, for messages
    files: tuple[ImageFile, ...]


@dataclass
class Scan:
    """The files worth decoding (readable header, first of their content) and those left out."""

    kept: list[tuple[ImageFile, str]] = field(default_factory=list)  # (file, sha256)
    grayscale: bool = True
    duplicates: list[dict] = field(default_factory=list)
    unreadable: list[dict] = field(default_factory=list)


def image_file(path: Path, name: str, label: int, split: str | None) -> ImageFile:
    """An `ImageFile` with the size and modification time of `path` (size -1 when missing)."""
    try:
        stat = path.stat()
    except OSError:
        return ImageFile(path, name, label, split)
    return ImageFile(path, name, label, split, stat.st_size, stat.st_mtime_ns)


def cache_folder(listing: ImageListing, data_root: Path, size: int) -> Path:
    """Where `listing` decoded at `size` is cached (see the module doc)."""
    source = hashlib.sha256(f"{listing.kind}:{listing.source.resolve()}".encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", listing.source.name)[:40]
    files = [(file.name, file.label, file.split, file.size, file.mtime_ns) for file in listing.files]
    content = json.dumps([FORMAT, size, listing.classes, files], separators=(",", ":"))
    return data_root / CACHE_FOLDER / f"{slug}-{source}" / f"{size}px-{hashlib.sha256(content.encode()).hexdigest()[:16]}"


def scan_files(listing: ImageListing) -> Scan:
    """Read every file once: its sha256 (later copies of a content are duplicates) and header mode."""
    scan, first = Scan(), {}
    for file in listing.files:
        try:
            data = file.path.read_bytes()
            mode = image_mode(data)
        except Exception as error:  # noqa: BLE001 - any decoder failure: the file is skipped, named
            scan.unreadable.append({"path": file.name, "reason": error_reason(error)})
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in first:
            scan.duplicates.append({"path": file.name, "sha256": digest, "duplicate_of": first[digest]})
            continue
        first[digest] = file.name
        scan.kept.append((file, digest))
        scan.grayscale &= is_grayscale(mode)
    return scan


def spread_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of `labels` ordered so that every class is spread evenly over the sequence (each
    class's members in a seeded random order): any prefix or suffix is close to stratified."""
    position = np.empty(len(labels))
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        position[rng.permutation(members)] = (np.arange(len(members)) + 0.5) / len(members)
    return np.argsort(position, kind="stable")


def assign_splits(labels: np.ndarray, marked_test: np.ndarray, source: Path) -> dict[str, np.ndarray]:
    """Indices into `labels` of the train, validation and test splits (rule: see the module doc)."""
    rng = np.random.default_rng(SPLIT_SEED)
    if marked_test.any():
        held = np.flatnonzero(marked_test)
        if len(held) < 2:
            raise DataError(f"{source}: 1 readable test image; at least 2 are needed (the first half validates, the rest tests)")
        held = held[spread_order(labels[held], rng)]
        validating = len(held) // 2
        return {"train": np.flatnonzero(~marked_test), "validation": held[:validating], "test": held[validating:]}
    if len(labels) < 3:
        raise DataError(f"{source}: {len(labels)} readable image(s); at least 3 are needed (train, validation, test)")
    order = spread_order(labels, rng)
    count = max(1, round(HELD_OUT * len(labels)))
    return {"train": np.sort(order[: -2 * count]), "validation": order[-2 * count : -count], "test": order[-count:]}


def shown(entries: list[dict], describe) -> str:
    """The first `SHOWN` of `entries` as text, with how many more there are."""
    text = "; ".join(describe(entry) for entry in entries[:SHOWN])
    return text + (f"; and {len(entries) - SHOWN} more" if len(entries) > SHOWN else "")


def unreadable_text(entry: dict) -> str:
    return f"{entry['path']} ({entry['reason']})"


def check_every_class(listing: ImageListing, labels: list[int], unreadable: list[dict]) -> None:
    """`DataError` naming the place when the source or one class has no readable image left."""
    reasons = f" (unreadable: {shown(unreadable, unreadable_text)})" if unreadable else ""
    if not labels:
        raise DataError(f"{listing.source}: no readable image{reasons}; add JPEG, PNG, WebP or BMP images")
    missing = sorted(set(range(len(listing.classes))) - set(labels))
    if missing:
        raise DataError(
            f"{listing.places[missing[0]]}: no readable image of class {listing.classes[missing[0]]!r}{reasons}; "
            "add images of it or remove the class"
        )


def decode_split(kept: list[tuple[ImageFile, str]], size: int, channels: int, path: Path, unreadable: list[dict]) -> list[dict]:
    """Decode `kept` into the .npy memmap `path` (rows in order; failures skipped and recorded in
    `unreadable`, unused rows stay at the end); the index rows of the images written."""
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(kept), channels, size, size))
    rows: list[dict] = []
    for file, digest in kept:
        try:
            images[len(rows)] = decode_image(file.path.read_bytes(), size, grayscale=channels == 1)
        except Exception as error:  # noqa: BLE001 - a damaged file is skipped and named, never a crash half-way
            unreadable.append({"path": file.name, "reason": error_reason(error)})
            continue
        rows.append({"path": file.name, "sha256": digest, "label": file.label})
    images.flush()
    return rows


def write_cache(listing: ImageListing, size: int, folder: Path) -> None:
    """Decode `listing` at `size` into a temporary folder, then rename it to `folder`."""
    scan = scan_files(listing)
    check_every_class(listing, [file.label for file, _ in scan.kept], scan.unreadable)
    labels = np.array([file.label for file, _ in scan.kept], dtype=np.int64)
    marked_test = np.array([file.split == "test" for file, _ in scan.kept], dtype=bool)
    splits = assign_splits(labels, marked_test, listing.source)
    channels = 1 if scan.grayscale else 3
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
    try:
        rows = {
            name: decode_split([scan.kept[i] for i in indices], size, channels, building / f"{name}.npy", scan.unreadable)
            for name, indices in splits.items()
        }
        check_every_class(listing, [row["label"] for split in rows.values() for row in split], scan.unreadable)
        index = {
            "format": FORMAT, "source": str(listing.source), "image_size": size, "channels": channels,
            "classes": list(listing.classes), "splits": rows, "duplicates": scan.duplicates, "unreadable": scan.unreadable,
        }  # fmt: skip
        (building / INDEX_FILE).write_text(json.dumps(index, indent=1))
        publish(building, folder)
    finally:
        shutil.rmtree(building, ignore_errors=True)


def publish(building: Path, folder: Path) -> None:
    """Rename the finished `building` folder to `folder` and delete stale caches of that size."""
    try:
        building.rename(folder)
    except OSError:
        if not (folder / INDEX_FILE).is_file():
            raise
        return  # a concurrent run published the same files first
    size_prefix = folder.name.split("-")[0] + "-"
    for stale in folder.parent.glob(f"{size_prefix}*"):
        if stale != folder:
            shutil.rmtree(stale, ignore_errors=True)


def read_split(folder: Path, name: str, rows: list[dict]) -> Split:
    """Split `name` of the cache in `folder`: images are a view on the memmap, nothing is copied."""
    # copy-on-write mapping: writable tensors (no torch warning), while the file is never changed
    images = np.load(folder / f"{name}.npy", mmap_mode="c")[: len(rows)]
    labels = np.array([row["label"] for row in rows], dtype=np.int64)
    return Split(torch.from_numpy(images), torch.from_numpy(labels))


def open_cache(folder: Path) -> tuple[dict[str, Split], dict]:
    """The splits and the index of the cache in `folder`."""
    with decoding_errors(f"{folder}: damaged image cache ({{reason}}); delete this folder and it is built again"):
        index = json.loads((folder / INDEX_FILE).read_text())
        return {name: read_split(folder, name, index["splits"][name]) for name in SPLITS}, index


def warn_left_out(index: dict, folder: Path) -> None:
    """A `SkippedImagesWarning` for the unreadable files and one for the duplicates of `index`
    (attributed to the caller of `load_dataset`)."""
    source, where = index["source"], f"all are listed in {folder / INDEX_FILE}"
    if index["unreadable"]:
        count = len(index["unreadable"])
        text = shown(index["unreadable"], unreadable_text)
        warnings.warn(f"{source}: skipped {count} unreadable image file(s): {text}; {where}", SkippedImagesWarning, stacklevel=5)
    if index["duplicates"]:
        count = len(index["duplicates"])
        text = shown(index["duplicates"], lambda entry: f"{entry['path']} = {entry['duplicate_of']}")
        warnings.warn(
            f"{source}: left out {count} exact duplicate file(s) (same bytes as an earlier file, kept once): {text}; {where}",
            SkippedImagesWarning,
            stacklevel=5,
        )


def load_images(name: str, listing: ImageListing, data_root: Path, size: int) -> ImageDataset:
    """The dataset of `listing` at `size` x `size`, decoded once into the cache under `data_root`."""
    folder = cache_folder(listing, data_root, size)
    if not (folder / INDEX_FILE).is_file():
        write_cache(listing, size, folder)
    splits, index = open_cache(folder)
    warn_left_out(index, folder)
    return ImageDataset(name, splits["train"], splits["validation"], splits["test"], len(listing.classes))
