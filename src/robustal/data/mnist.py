"""MNIST and Fashion-MNIST from the original IDX files (gzip or not) in the data root."""

from __future__ import annotations

from pathlib import Path

from robustal.data.dataset import ImageDataset, Split, split_validation
from robustal.data.idx import load_idx
from robustal.data.registry import DatasetInfo, register_dataset
from robustal.errors import DataError

# sha256 of the *decompressed* content (what identifies the data; recompression changes the .gz).
IDX_SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}

# Extra folders searched after the data root (Debian's dataset-fashion-mnist package).
SYSTEM_FOLDERS = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")]}

VALIDATION_SIZE = 5000


def candidate_folders(name: str, data_root: Path) -> list[Path]:
    """Folders searched for dataset `name`, in order."""
    return [data_root / name, *SYSTEM_FOLDERS.get(name, [])]


def find_idx_file(name: str, stem: str, data_root: Path) -> Path:
    """The path of IDX file `stem` (``.gz`` or uncompressed) of dataset `name`."""
    folders = candidate_folders(name, data_root)
    for folder in folders:
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                return candidate
    searched = ", ".join(str(folder / f"{stem}.gz") for folder in folders)
    raise DataError(
        f"{name}: missing file {stem}.gz (looked for {searched}); put the original IDX files in "
        f"<data root>/{name}/ (data root: --data-root or $ROBUSTAL_DATA) or run `robustal data download {name}`"
    )


def load_idx_dataset(name: str, data_root: Path) -> ImageDataset:
    """Load MNIST-like dataset `name`, verifying every file against `IDX_SHA256`."""
    checksums = IDX_SHA256[name]

    def read(stem: str, ndim: int):
        return load_idx(find_idx_file(name, stem, data_root), ndim, checksums[stem])

    def split(prefix: str) -> Split:
        images = read(f"{prefix}-images-idx3-ubyte", 3).unsqueeze(1)
        labels = read(f"{prefix}-labels-idx1-ubyte", 1).long()
        if images.shape[0] != labels.shape[0]:
            raise DataError(f"{name}/{prefix}: {images.shape[0]} images but {labels.shape[0]} labels")
        return Split(images, labels)

    return split_validation(name, split("train"), split("t10k"), num_classes=10, validation_size=VALIDATION_SIZE)


for _name, _description in (
    ("mnist", "MNIST, 60,000 train; test split: first 5,000 validation, last 5,000 test"),
    ("fashion-mnist", "Fashion-MNIST, 60,000 train; test split: first 5,000 validation, last 5,000 test"),
):
    register_dataset(
        DatasetInfo(
            name=_name,
            loader=lambda root, _n=_name: load_idx_dataset(_n, root),
            default_model="lenet5",
            native_size=28,
            default_size=32,
            description=_description,
        )
    )
