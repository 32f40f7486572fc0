"""A user's own image files as a dataset: ``folder:PATH`` or ``csv:FILE.csv``.

``folder:PATH``: one subfolder per class, ``PATH/<class>/**/<image>``; or ``PATH/train/<class>/...``
with an optional ``PATH/test/<class>/...``. ``csv:FILE.csv``: a header line with ``path`` and
``label`` columns and optionally ``split`` (``train`` or ``test``); paths are relative to the
CSV's folder (or absolute), labels are class names.

Class names are sorted (numerically when all are integers, so ``0``..``9`` keep their values) and
numbered 0..K-1. Images: ``.jpg``, ``.jpeg``, ``.png``, ``.webp``, ``.bmp`` (hidden files and
others are ignored in folders); all grayscale -> 1 channel, else every image is converted to RGB;
resized (shorter side) and center-cropped to the image size (default `DEFAULT_SIZE`). Without
test images (no ``test/`` folder, no ``test`` rows) a seeded, stratified 10 % of every class
validates and another 10 % tests; with them, the first half of the test images (stratified)
validates. Decoded once into a memory-mapped cache under the data root, with exact duplicates
and unreadable files left out and reported (`robustal.data.image_cache`). Default model:
``small_cnn``; no training augmentation.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path

from robustal.data.image_cache import ImageFile, ImageListing, image_file, load_images
from robustal.data.images import SUFFIXES, is_image_file
from robustal.data.registry import DatasetInfo, register_dataset_scheme
from robustal.errors import DataError, decoding_errors

DEFAULT_SIZE = 32
DEFAULT_MODEL = "small_cnn"
SPLIT_FOLDERS = ("train", "test")
CSV_COLUMNS = ("path", "label")
LAYOUT = "one subfolder per class (PATH/cat/1.jpg, PATH/dog/2.png, ...), or train/ and test/ subfolders holding them"


def sort_classes(names) -> tuple[str, ...]:
    """Class names in label order: numerically when all are integers, else alphabetically."""
    names = set(names)
    if all(name.isdigit() for name in names):
        return tuple(sorted(names, key=int))
    return tuple(sorted(names))


def subfolders(folder: Path) -> list[Path]:
    """The non-hidden subfolders of `folder`."""
    return [entry for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith(".")]


def images_in(folder: Path) -> list[Path]:
    """The image files under `folder` (recursively, sorted, hidden files and folders skipped)."""
    found = []
    for directory, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        found += [Path(directory) / name for name in sorted(files) if is_image_file(name) and not name.startswith(".")]
    return found


def class_root(path: Path) -> Path:
    """The folder whose subfolders are the classes: ``PATH/train`` in the split layout, else PATH."""
    if not path.is_dir():
        raise DataError(f"{path}: no such folder; folder:PATH needs {LAYOUT}")
    if not (path / "train").is_dir():
        return path
    others = sorted(entry.name for entry in subfolders(path) if entry.name not in SPLIT_FOLDERS)
    if others:
        raise DataError(
            f"{path}: has train/ and also {', '.join(others)}/; with train/ only train/ and test/ are read: move the rest"
        )
    return path / "train"


def folder_classes(path: Path) -> tuple[str, ...]:
    """The class names of folder dataset `path` (its class subfolders); `DataError` when fewer than 2."""
    root = class_root(path)
    classes = sort_classes(entry.name for entry in subfolders(root))
    if len(classes) < 2:
        raise DataError(f"{root}: {len(classes)} class subfolder(s) {list(classes)}; a classifier needs at least 2: {LAYOUT}")
    return classes


def class_files(folder: Path, label: int, split: str | None, top: Path) -> list[ImageFile]:
    """The images of one class folder; `DataError` when it holds none."""
    found = images_in(folder)
    if not found:
        raise DataError(f"{folder}: no image files ({', '.join(SUFFIXES)}); add images of this class or remove the folder")
    return [image_file(file, file.relative_to(top).as_posix(), label, split) for file in found]


def list_folder(path: Path) -> ImageListing:
    """The image files of folder dataset `path` (layout: see the module doc)."""
    classes = folder_classes(path)
    root = class_root(path)
    parts = [(None, root)] if root == path else [("train", root), ("test", path / "test")]
    files: list[ImageFile] = []
    for split, folder in parts:
        if not folder.is_dir():
            continue  # no test/: held out from train/
        unknown = sorted({entry.name for entry in subfolders(folder)} - set(classes))
        if unknown:
            raise DataError(
                f"{folder}: class folder(s) {', '.join(unknown)} are not in {root}; every test class needs training images"
            )
        for label, name in enumerate(classes):
            if split != "test" or (folder / name).is_dir():  # a test/ folder may lack a class
                files += class_files(folder / name, label, split, path)
    places = tuple(str(root / name) for name in classes)
    return ImageListing("folder", path, classes, places, tuple(files))


def check_csv_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"{path}: no such file; csv:FILE needs a CSV file with the columns path,label[,split]")


def csv_rows(path: Path) -> tuple[list[dict], bool]:
    """The rows of the CSV at `path` (with their line numbers) and whether it has a split column."""
    check_csv_file(path)
    with decoding_errors(f"{path}: not a readable CSV file ({{reason}}); save it as UTF-8 text with a header line path,label"):
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in reader.fieldnames or []]
            reader.fieldnames = columns
            rows = [{**row, "line": reader.line_num} for row in reader]
    missing = [name for name in CSV_COLUMNS if name not in columns]
    if missing:
        raise DataError(f"{path}: no column {', '.join(missing)}; the first line must name the columns path,label (and optionally split)")
    if not rows:
        raise DataError(f"{path}: lists no images; add lines path,label")
    return rows, "split" in columns


def csv_value(row: dict, column: str, path: Path) -> str:
    """The stripped value of `column` in `row`; `DataError` naming the line when it is empty."""
    value = (row.get(column) or "").strip()
    if not value:
        raise DataError(f"{path}, line {row['line']}: empty {column}")
    return value


def list_csv(path: Path) -> ImageListing:
    """The image files listed in the CSV at `path` (format: see the module doc)."""
    rows, has_split = csv_rows(path)
    entries = []  # (path as written, class name, split)
    for row in rows:
        split = (row.get("split") or "").strip() if has_split else None
        if has_split and split not in SPLIT_FOLDERS:
            raise DataError(f"{path}, line {row['line']}: split {split!r}; write train or test")
        entries.append((csv_value(row, "path", path), csv_value(row, "label", path), split))
    classes = sort_classes(label for _, label, _ in entries)
    if len(classes) < 2:
        raise DataError(f"{path}: labels name {len(classes)} class ({classes[0]}); a classifier needs at least 2")
    labels = {name: label for label, name in enumerate(classes)}
    files = tuple(image_file(path.parent / name, name, labels[label], split) for name, label, split in entries)
    places = tuple(f"{path} (label {name})" for name in classes)
    return ImageListing("csv", path, classes, places, files)


def describe(name: str, kind: str, description: str, listing: Callable[[], ImageListing]) -> DatasetInfo:
    """The registry entry of an image-file dataset; `listing()` lists its files when it is loaded."""
    return DatasetInfo(
        name=name,
        loader=lambda data_root: load_images(name, listing(), data_root, DEFAULT_SIZE),
        sized_loader=lambda data_root, size: load_images(name, listing(), data_root, size),
        default_model=DEFAULT_MODEL,
        native_size=DEFAULT_SIZE,
        default_size=DEFAULT_SIZE,
        description=f"{description}; {kind}, decoded at --image-size",
    )


def folder_dataset_info(name: str, path: Path) -> DatasetInfo:
    """The registry entry of ``folder:PATH`` (lists the class folders only: cheap, and early errors)."""
    classes = folder_classes(path)
    shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
    return describe(name, "image folder", f"{path.name}: {len(classes)} classes ({shown})", lambda: list_folder(path))


def csv_dataset_info(name: str, path: Path) -> DatasetInfo:
    """The registry entry of ``csv:FILE.csv`` (checks the file exists; read when loaded)."""
    check_csv_file(path)
    return describe(name, "CSV list of image files", path.name, lambda: list_csv(path))


register_dataset_scheme("folder", folder_dataset_info)
register_dataset_scheme("csv", csv_dataset_info)
