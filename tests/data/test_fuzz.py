"""Fuzzing every file format robustal reads from users: seeded random corruptions (bytes
changed, truncation, garbage appended) of a valid file must end in a `RobustALError` (a
`DataError` naming the file, or a `ConfigError`) or in a correct load, never in another
exception: a damaged download, a half-copied dataset or a truncated run file must say which
file is bad and what to do, not crash with a decoder's traceback (zlib.error, EOFError, ...)."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterator
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import yaml
from PIL import Image

from dataset_files import cifar_batches, svhn_arrays, write_cifar_archive, write_idx_dataset
from run_helpers import tiny_settings
from robustal.config import make_config
from robustal.data import load_dataset
from robustal.data.download import dataset_status, decode_file
from robustal.data.idx import load_idx
from robustal.errors import DataError, RobustALError
from robustal.experiments import store
from robustal.experiments.spec import load_study_spec
from robustal.loop import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    ROUNDS_FILE,
    RoundRecord,
    build_learner,
    load_checkpoint,
    read_checkpoint,
    records_frame,
)

# per format: a few seconds in all; ROBUSTAL_FUZZ_CORRUPTIONS=1000 for a deeper search
CORRUPTIONS = int(os.environ.get("ROBUSTAL_FUZZ_CORRUPTIONS", "30"))
KINDS = ("change", "truncate", "append")
HEADER_BYTES = 512  # half of the changes hit the first bytes, where formats keep their headers


def corruptions(content: bytes, seed: int, count: int = CORRUPTIONS) -> Iterator[tuple[str, bytes]]:
    """`count` seeded corruptions of `content`, cycling through `KINDS`: 1 to 8 bytes changed
    (every other time within the header), truncated at a random length (empty included), or
    1 to 256 random bytes appended. Yields (description, corrupted bytes)."""
    rng = np.random.default_rng(seed)
    for number in range(count):
        kind, data = KINDS[number % len(KINDS)], bytearray(content)
        if kind == "change":
            span = min(len(data), HEADER_BYTES) if number % 2 else len(data)
            for position in rng.integers(0, span, int(rng.integers(1, 9))):
                data[position] ^= int(rng.integers(1, 256))
        elif kind == "truncate":
            data = data[: int(rng.integers(0, len(data)))]
        else:
            data += rng.bytes(int(rng.integers(1, 257)))
        yield f"corruption {number} ({kind})", bytes(data)


def assert_fails_cleanly(path: Path, *readers: Callable[[], object], seed: int = 0) -> int:
    """Corrupt `path` in every way of `corruptions` and call each reader on it; fails listing
    every exception that is not a `RobustALError`. Restores the file and returns how many
    reads were refused (a fuzz that refuses nothing tests nothing)."""
    original, refused, crashes = path.read_bytes(), 0, []
    for description, content in corruptions(original, seed):
        path.write_bytes(content)
        for reader in readers:
            try:
                reader()
            except RobustALError:
                refused += 1
            except Exception as error:  # noqa: BLE001 - the point of the test
                crashes.append(f"{description}: {reader.__name__} raised {type(error).__name__}: {error}")
    path.write_bytes(original)
    if crashes:
        pytest.fail(f"{len(crashes)} reads of a corrupted {path.name} crashed:\n" + "\n".join(crashes))
    return refused


def assert_most_refused(refused: int, readers: int = 1) -> None:
    assert refused >= CORRUPTIONS * readers // 3, f"only {refused} corruptions refused: is the file read at all?"


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files(tmp_path, compress):
    """Small MNIST-format files (not the real ones: the fuzz must not depend on ../shared)."""
    root = tmp_path / "root"
    files = write_idx_dataset(root / "mnist", compress=compress)
    images, labels = files["train-images-idx3-ubyte"], files["t10k-labels-idx1-ubyte"]

    def read_images():
        return load_idx(images, 3)

    def read_labels():
        return load_idx(labels, 1)

    def status():  # `robustal data list`: reports a state, raises nothing
        assert dataset_status("mnist", root).state in ("present", "corrupt")

    def load():
        return load_dataset("mnist", root)  # other content than MNIST: always refused, never crashes

    assert_most_refused(assert_fails_cleanly(images, read_images, status, load, seed=1))
    assert_most_refused(assert_fails_cleanly(labels, read_labels, status, load, seed=2))


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_files(tmp_path, save):
    rng = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    save(
        path,
        x_train=rng.integers(0, 256, (10, 6, 6), dtype=np.uint8),
        y_train=np.arange(10) % 3,
        x_test=rng.integers(0, 256, (4, 6, 6), dtype=np.uint8),
        y_test=np.arange(4) % 3,
    )

    def load():
        return load_dataset(str(path))

    def settings():  # the run settings read the array headers
        return make_config(dataset=str(path), initial=2, per_round=2, budget=4)

    assert_most_refused(assert_fails_cleanly(path, load, settings))


def test_cifar_archive(tmp_path):
    root = tmp_path / "root"
    (root / "cifar10").mkdir(parents=True)
    archive = root / "cifar10" / "cifar-10-python.tar.gz"
    write_cifar_archive(archive, {name: pickle.dumps(batch, protocol=2) for name, batch in cifar_batches().items()})

    def load():
        return load_dataset("cifar10", root)

    def decode():  # what `robustal data list` does with a file whose md5 differs
        decode_file("cifar10", archive)

    assert_most_refused(assert_fails_cleanly(archive, load, decode))


def test_cifar_batch_in_an_extracted_folder(tmp_path):
    folder = tmp_path / "root" / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, batch in cifar_batches().items():
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))

    def load():
        return load_dataset("cifar10", tmp_path / "root")

    assert_most_refused(assert_fails_cleanly(folder / "test_batch", load))


def test_svhn_mat(tmp_path):
    folder = tmp_path / "svhn"
    folder.mkdir()
    for split, (count, seed) in {"train": (12, 0), "test": (8, 1)}.items():
        images, labels = svhn_arrays(count, seed)
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": images, "y": labels})
    path = folder / "test_32x32.mat"

    def load():
        return load_dataset("svhn", tmp_path)

    def decode():
        decode_file("svhn", path)

    assert_most_refused(assert_fails_cleanly(path, load, decode))


def image_folder(folder: Path) -> Path:
    """Two classes of three small PNG images each, and ``list.csv`` listing them."""
    rng = np.random.default_rng(0)
    lines = ["path,label"]
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for number in range(3):
            Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(folder / label / f"{number}.png")
            lines.append(f"{label}/{number}.png,{label}")
    (folder / "list.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_image_files_and_csv_lists(tmp_path):
    """A damaged image is skipped and named, never a crash; a damaged CSV list is refused or read."""
    folder = image_folder(tmp_path / "images")
    damaged = folder / "a" / "0.png"

    def load_folder():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load_dataset(f"folder:{folder}", tmp_path / "root", 8)
        if any(f"skipped 1 unreadable image file(s): a/0.png (" in str(warning.message) for warning in caught):
            raise DataError("skipped")  # counted as refused: the damage was noticed and named

    def load_csv():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a damaged path names a missing file: skipped with a warning
            return load_dataset(f"csv:{folder / 'list.csv'}", tmp_path / "root", 8)

    assert_most_refused(assert_fails_cleanly(damaged, load_folder))
    assert assert_fails_cleanly(folder / "list.csv", load_csv) > 0


@pytest.fixture
def run_dir(tmp_path, digits) -> Path:
    """A run directory as `robustal run --out` leaves it after one round (no training: the
    learner's initial state, one record)."""
    config = make_config(**tiny_settings())
    learner, _ = build_learner(config, digits)
    record = RoundRecord(0, 30, 0.5, 0.1, 0.1, 0, 1.0, 0.0, 1.0, list(range(30)))
    run = tmp_path / "runs" / config.run_id()
    run.mkdir(parents=True)
    (run / CONFIG_FILE).write_text(f'{{"run_id": "{config.run_id()}", "config": {config.model_dump_json()}}}')
    records_frame(config, [record]).to_parquet(run / ROUNDS_FILE, index=False)
    torch.save({**learner.state(), "run_id": config.run_id(), "records": [vars(record)]}, run / CHECKPOINT_FILE)
    return run


def test_checkpoints(run_dir):
    checkpoint = run_dir / CHECKPOINT_FILE

    def read():
        return read_checkpoint(checkpoint)

    def load():  # what `robustal retrain --checkpoint` and `robustal evaluate` read
        return load_checkpoint(run_dir)

    assert_most_refused(assert_fails_cleanly(checkpoint, read, load))


def test_rounds_parquet(run_dir):
    """A damaged rounds.parquet never crashes the study commands: the run is flagged ``damaged``
    (counted as refused here) while the reads go on, leaving it out with a warning."""
    study_dir = run_dir.parents[1]
    config = make_config(**tiny_settings())
    store.write_study(study_dir, {"name": "fuzz", "settings": tiny_settings(), "grid": {}}, [config])

    def rounds():
        return store.rounds_completed(run_dir)

    def status():
        if store.study_status(study_dir)["state"].iloc[0] == "damaged":
            raise DataError("flagged as damaged")

    def results():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", store.DamagedFileWarning)
            return store.study_results(study_dir)

    assert_most_refused(assert_fails_cleanly(run_dir / ROUNDS_FILE, rounds, status, results))


def test_study_specs(tmp_path):
    path = tmp_path / "study.yaml"
    spec = {
        "name": "fuzz",
        "settings": tiny_settings(),
        "grid": {"acquisition": ["random", "entropy"], "seed": [0, 1]},
        "retrain": {"acquisition": ["random"], "budgets": ["1%", 10]},
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))

    def load():
        study = load_study_spec(path)
        study.expand_retraining(study.expand())

    assert_fails_cleanly(path, load)  # a changed byte in YAML often still parses: no minimum refused
