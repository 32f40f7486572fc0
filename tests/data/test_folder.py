"""Image folders and CSV lists as datasets: classes, decoding, channels, splits, unreadable files,
duplicates, the memory-mapped cache (reused, rebuilt, not copied), and a run on a folder."""

from __future__ import annotations

import io
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cli_helpers import invoke
from robustal.cli.data import data_app
from robustal.config import make_config
from robustal.data import available_datasets, dataset_info, image_cache, load_dataset
from robustal.data.image_cache import INDEX_FILE, SPLITS, SkippedImagesWarning
from robustal.data.images import decode_image
from robustal.errors import ConfigError, DataError
from run_helpers import QUICK, cli_flags

CLASSES = ("ant", "mole", "zebra")  # created in another order: labels follow the sorted names
PER_CLASS = 12
FORMATS = ("PNG", "JPEG", "BMP", "WEBP")
SIZE = 8


def write_image(path: Path, pixels: np.ndarray, format: str = "PNG", mode: str | None = None) -> Path:  # noqa: A002
    """`pixels` (H, W) or (H, W, 3) uint8 saved as `format` (converted to `mode` first if given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    (image.convert(mode) if mode else image).save(path, format=format)
    return path


def random_pixels(rng, height: int, width: int, channels: int = 3) -> np.ndarray:
    shape = (height, width, channels) if channels > 1 else (height, width)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def make_folder(folder: Path, classes=("zebra", "ant", "mole"), per_class: int = PER_CLASS, seed: int = 0) -> Path:
    """`per_class` images per class of mixed formats, sizes and modes (RGB, grayscale, palette)."""
    rng = np.random.default_rng(seed)
    for name in classes:
        for number in range(per_class):
            fmt = FORMATS[number % len(FORMATS)]
            pixels = random_pixels(rng, 9 + number, 12 + 2 * (number % 3))
            mode = {0: "L", 1: None, 2: "P" if fmt in ("PNG", "BMP") else None}[number % 3] if fmt != "WEBP" else None
            write_image(folder / name / f"{number:02d}.{fmt.lower()}", pixels, fmt, mode)
    return folder


def load(name: str, data_root: Path, size: int = SIZE):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_dataset(name, data_root, size)
    return dataset, [str(warning.message) for warning in caught if warning.category is SkippedImagesWarning]


def cache_folders(data_root: Path) -> list[Path]:
    return sorted(path.parent for path in (data_root / image_cache.CACHE_FOLDER).glob(f"*/*/{INDEX_FILE}"))


def read_index(data_root: Path) -> dict:
    (folder,) = cache_folders(data_root)
    return json.loads((folder / INDEX_FILE).read_text())


@pytest.fixture
def images(tmp_path) -> Path:
    """A folder of 3 classes x 12 images, plus one corrupt file and one exact duplicate."""
    folder = make_folder(tmp_path / "images")
    (folder / "mole" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    shutil.copyfile(folder / "ant" / "02.bmp", folder / "zebra" / "copy.bmp")
    return folder


def test_labels_follow_the_sorted_class_folders_and_rows_match_their_files(images, tmp_path):
    dataset, _ = load(f"folder:{images}", tmp_path / "root")
    assert dataset.num_classes == 3 and dataset.image_shape == (3, SIZE, SIZE)
    index = read_index(tmp_path / "root")
    assert index["classes"] == list(CLASSES)
    splits = {"train": dataset.train, "validation": dataset.validation, "test": dataset.test}
    paths = []
    for name in SPLITS:
        rows, split = index["splits"][name], splits[name]
        assert [row["label"] for row in rows] == split.labels.tolist()
        for row, image in zip(rows, split.images):
            assert row["label"] == CLASSES.index(row["path"].split("/")[0])
            np.testing.assert_array_equal(image.numpy(), decode_image((images / row["path"]).read_bytes(), SIZE, False))
        paths += [row["path"] for row in rows]
    assert len(paths) == len(set(paths)) == 3 * PER_CLASS  # every image once: no corrupt file, no duplicate
    # no test/ folder: a seeded 10 % of each class validates and 10 % tests (4 + 4 of 36)
    assert len(dataset.validation) == len(dataset.test) == 4
    assert set(dataset.validation.labels.tolist()) == set(dataset.test.labels.tolist()) == {0, 1, 2}


def test_resize_keeps_the_center_of_the_shorter_side():
    # 8 wide, 32 high: red rows 0..9, green 10..21, blue 22..31; shorter side 8 -> 4 (rows -> 16),
    # the central 4 rows of 16 come from rows 12..19 (bilinear reaches 11..20): all green
    pixels = np.zeros((32, 8, 3), dtype=np.uint8)
    pixels[:10, :, 0], pixels[10:22, :, 1], pixels[22:, :, 2] = 255, 255, 255
    decoded = decode_image(encode(pixels), 4, grayscale=False)
    assert decoded.shape == (3, 4, 4)
    np.testing.assert_array_equal(decoded, np.broadcast_to(np.array([0, 255, 0], dtype=np.uint8)[:, None, None], (3, 4, 4)))


def test_crop_without_resize_is_exactly_the_central_columns():
    pixels = random_pixels(np.random.default_rng(1), 4, 8)  # shorter side already 4
    decoded = decode_image(encode(pixels), 4, grayscale=False)
    np.testing.assert_array_equal(decoded, pixels[:, 2:6].transpose(2, 0, 1))


def test_small_images_are_enlarged_to_the_size():
    decoded = decode_image(encode(np.full((2, 3), 77, dtype=np.uint8)), 6, grayscale=True)
    np.testing.assert_array_equal(decoded, np.full((1, 6, 6), 77, dtype=np.uint8))


def encode(pixels: np.ndarray, format: str = "PNG") -> bytes:  # noqa: A002
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=format)
    return buffer.getvalue()


def test_all_grayscale_gives_one_channel_and_one_colour_image_gives_rgb(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "gray"
    for name in ("a", "b"):
        for number in range(4):
            write_image(folder / name / f"{number}.png", random_pixels(rng, 10, 10, channels=1))
    write_image(folder / "b" / "bits.bmp", random_pixels(rng, 10, 10, channels=1), "BMP", mode="1")
    dataset, _ = load(f"folder:{folder}", tmp_path / "root")
    assert dataset.channels == 1
    gray = write_image(folder / "a" / "4.png", random_pixels(rng, 10, 10, channels=1))
    write_image(folder / "a" / "colour.jpg", random_pixels(rng, 10, 10), "JPEG")
    dataset, _ = load(f"folder:{folder}", tmp_path / "root")
    assert dataset.channels == 3
    rows = {row["path"]: index for index, row in enumerate(read_index(tmp_path / "root")["splits"]["train"])}
    converted = dataset.train.images[rows["a/4.png"]]  # grayscale in an RGB dataset: three equal channels
    assert (converted[0] == converted[1]).all() and (converted[1] == converted[2]).all()
    np.testing.assert_array_equal(converted[0].numpy(), decode_image(gray.read_bytes(), SIZE, True)[0])


def test_unreadable_files_are_skipped_and_reported(images, tmp_path):
    truncated = images / "ant" / "truncated.png"  # a valid header, the pixel data cut: fails only when decoded
    content = encode(random_pixels(np.random.default_rng(3), 40, 40))
    truncated.write_bytes(content[: len(content) // 2])
    dataset, messages = load(f"folder:{images}", tmp_path / "root")
    assert sum(len(split) for split in (dataset.train, dataset.validation, dataset.test)) == 3 * PER_CLASS
    unreadable = {entry["path"]: entry["reason"] for entry in read_index(tmp_path / "root")["unreadable"]}
    assert unreadable.keys() == {"mole/broken.png", "ant/truncated.png"}
    assert "not an image" in unreadable["mole/broken.png"] and "truncated" in unreadable["ant/truncated.png"]
    (skipped,) = [message for message in messages if "skipped" in message]
    assert "skipped 2 unreadable image file(s)" in skipped and "mole/broken.png (not an image" in skipped
    assert INDEX_FILE in skipped


def test_exact_duplicates_are_kept_once_and_listed(images, tmp_path):
    _, messages = load(f"folder:{images}", tmp_path / "root")
    (duplicates,) = read_index(tmp_path / "root")["duplicates"]
    assert duplicates["path"] == "zebra/copy.bmp" and duplicates["duplicate_of"] == "ant/02.bmp"
    assert any("left out 1 exact duplicate file(s)" in message and "zebra/copy.bmp = ant/02.bmp" in message for message in messages)


def test_the_cache_is_reused_and_rebuilt_when_a_file_changes(images, tmp_path, monkeypatch):
    root = tmp_path / "root"
    first, _ = load(f"folder:{images}", root)
    decoded = []
    original = image_cache.decode_image

    def counting(data, size, grayscale):
        decoded.append(size)
        return original(data, size, grayscale)

    monkeypatch.setattr(image_cache, "decode_image", counting)
    again, _ = load(f"folder:{images}", root)
    assert decoded == []  # nothing changed: nothing decoded
    np.testing.assert_array_equal(again.train.images.numpy(), first.train.images.numpy())
    (old,) = cache_folders(root)
    changed = images / "ant" / "00.png"
    write_image(changed, np.full((12, 12, 3), 200, dtype=np.uint8))
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a new mtime even on a coarse clock
    rebuilt, _ = load(f"folder:{images}", root)
    assert len(decoded) == 3 * PER_CLASS
    (new,) = cache_folders(root)  # the stale cache of this size is gone
    assert new != old and not old.exists()
    row = [row["path"] for row in read_index(root)["splits"]["train"]].index("ant/00.png")
    assert (rebuilt.train.images[row] == 200).all()


def test_other_image_sizes_get_their_own_cache(images, tmp_path):
    load(f"folder:{images}", tmp_path / "root", size=SIZE)
    dataset, _ = load(f"folder:{images}", tmp_path / "root", size=5)
    assert dataset.image_shape == (3, 5, 5)
    assert sorted(folder.name.split("-")[0] for folder in cache_folders(tmp_path / "root")) == ["5px", f"{SIZE}px"]


def mapped_files(address: int) -> set[str]:
    """The files mapped into this process at `address` (Linux /proc/self/maps)."""
    found = set()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(value, 16) for value in fields[0].split("-"))
        if start <= address < end and len(fields) == 6:
            found.add(fields[5])
    return found


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's /proc/self/maps")
def test_split_tensors_are_views_on_the_memory_mapped_cache(images, tmp_path):
    dataset, _ = load(f"folder:{images}", tmp_path / "root")
    (folder,) = cache_folders(tmp_path / "root")
    for name, split in (("train", dataset.train), ("validation", dataset.validation), ("test", dataset.test)):
        assert mapped_files(split.images.data_ptr()) == {str((folder / f"{name}.npy").resolve())}


def test_train_and_test_folders(tmp_path):
    folder = tmp_path / "split"
    make_folder(folder / "train", classes=("b", "a"), per_class=5, seed=4)
    make_folder(folder / "test", classes=("a", "b"), per_class=3, seed=5)
    dataset, _ = load(f"folder:{folder}", tmp_path / "root")
    index = read_index(tmp_path / "root")
    assert {row["path"].split("/")[0] for row in index["splits"]["train"]} == {"train"} and len(dataset.train) == 10
    held = index["splits"]["validation"] + index["splits"]["test"]
    assert {row["path"].split("/")[0] for row in held} == {"test"}
    assert len(dataset.validation) == 3 and len(dataset.test) == 3  # the first half of the 6 test images validates
    assert sorted(dataset.validation.labels.tolist()) in ([0, 0, 1], [0, 1, 1])  # both classes: stratified


def test_the_held_out_split_is_seeded(images, tmp_path):
    first, _ = load(f"folder:{images}", tmp_path / "root")
    second, _ = load(f"folder:{images}", tmp_path / "other-root")  # built again from scratch
    assert read_index(tmp_path / "root")["splits"] == read_index(tmp_path / "other-root")["splits"]
    np.testing.assert_array_equal(first.test.images.numpy(), second.test.images.numpy())


def test_csv_lists_paths_labels_and_splits(tmp_path):
    rng = np.random.default_rng(6)
    lines = ["path,label,split"]
    for number in range(18):
        label, split = ("10", "2", "1")[number % 3], "test" if number >= 12 else "train"
        write_image(tmp_path / "pictures" / f"{number}.png", random_pixels(rng, 9, 9))
        lines.append(f"pictures/{number}.png,{label},{split}")
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    dataset, _ = load(f"csv:{tmp_path / 'list.csv'}", tmp_path / "root")
    index = read_index(tmp_path / "root")
    assert index["classes"] == ["1", "2", "10"]  # integer names: numeric order
    assert [row["path"] for row in index["splits"]["train"]] == [f"pictures/{number}.png" for number in range(12)]
    assert dataset.train.labels.tolist() == [2, 1, 0] * 4
    assert len(dataset.validation) == len(dataset.test) == 3
    assert {row["path"] for row in index["splits"]["test"] + index["splits"]["validation"]} == {
        f"pictures/{number}.png" for number in range(12, 18)
    }


@pytest.mark.parametrize(
    "content, message",
    [
        ("file,label\na.png,x\n", "no column path"),
        ("path,label,split\na.png,x,train\nb.png,y,validate\n", "line 3: split 'validate'; write train or test"),
        ("path,label\na.png,\n", "line 2: empty label"),
        ("path,label\n", "lists no images"),
        ("path,label\na.png,x\nb.png,x\n", "labels name 1 class"),
        (b"path,label\n\xff\xfe.png,x\n", "not a readable CSV file"),
    ],
)
def test_csv_errors_name_the_file_and_line(tmp_path, content, message):
    path = tmp_path / "list.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError, match=message) as error:
        load_dataset(f"csv:{path}", tmp_path / "root", SIZE)
    assert str(path) in str(error.value)


def test_csv_missing_files_are_reported_like_unreadable_ones(tmp_path):
    rng = np.random.default_rng(7)
    lines = ["path,label"] + [f"{number}.png,{'ab'[number % 2]}" for number in range(6)] + ["gone.png,a"]
    for number in range(6):
        write_image(tmp_path / f"{number}.png", random_pixels(rng, 8, 8))
    (tmp_path / "list.csv").write_text("\n".join(lines))
    _, messages = load(f"csv:{tmp_path / 'list.csv'}", tmp_path / "root")
    assert [entry["path"] for entry in read_index(tmp_path / "root")["unreadable"]] == ["gone.png"]
    assert any("gone.png (" in message for message in messages)


def test_empty_or_unreadable_class_folders_are_clear_errors(images, tmp_path):
    (images / "newt").mkdir()
    with pytest.raises(DataError, match=f"{images / 'newt'}: no image files .*add images of this class or remove the folder"):
        load_dataset(f"folder:{images}", tmp_path / "root", SIZE)
    (images / "newt" / "a.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=f"{images / 'newt'}: no readable image of class 'newt' .*newt/a.png"):
        load_dataset(f"folder:{images}", tmp_path / "root", SIZE)
    assert cache_folders(tmp_path / "root") == [] and not list((tmp_path / "root").rglob(".building-*"))


@pytest.mark.parametrize(
    "layout, message",
    [
        ({}, "no such folder"),
        ({"only": ["a.png"]}, r"1 class subfolder\(s\) \['only'\]; a classifier needs at least 2"),
        ({"train/a": ["1.png"], "train/b": ["1.png"], "extra": []}, "with train/ only train/ and test/ are read"),
        ({"train/a": ["1.png"], "train/b": ["1.png"], "test/c": ["1.png"]}, r"class folder\(s\) c are not in"),
    ],
)
def test_folder_layout_errors(tmp_path, layout, message):
    folder = tmp_path / "data"
    for subfolder, files in layout.items():
        (folder / subfolder).mkdir(parents=True)
        for name in files:
            write_image(folder / subfolder / name, np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(DataError, match=message):
        dataset_info(f"folder:{folder}").sized_loader(tmp_path / "root", SIZE)


def test_names_in_the_registry_and_the_run_settings(images):
    assert not any(":" in name for name in available_datasets())  # `robustal data list` shows registered ones only
    info = dataset_info(f"folder:{images}")
    assert info.name == f"folder:{images}" and info.default_model == "small_cnn" and "3 classes (ant, mole, zebra)" in info.description
    config = make_config(dataset=f"folder:{images}", image_size=SIZE, initial=4, per_round=4, budget=8)
    assert config.model_name == "small_cnn" and not config.uses_augmentation
    with pytest.raises(ConfigError, match=r"image size 513 .* outside 1\.\.512"):
        make_config(dataset=f"folder:{images}", image_size=513, initial=4, per_round=4, budget=8)
    with pytest.raises(ConfigError, match="unknown dataset 'photos:x'.*or csv:PATH or folder:PATH"):
        dataset_info("photos:x")


def test_data_list_ignores_the_image_cache(images, tmp_path):
    load(f"folder:{images}", tmp_path / "root")
    result = invoke("list", "--data-root", tmp_path / "root", app=data_app, terminal_width=250)
    assert result.exit_code == 0, result.output
    assert "image-cache" not in result.output and "digits" in result.output


@pytest.mark.filterwarnings("ignore::robustal.data.image_cache.SkippedImagesWarning")  # the corrupt file and the copy
def test_a_run_on_a_folder(images, tmp_path):
    out = tmp_path / "run"
    settings = dict(
        QUICK, dataset=f"folder:{images}", image_size=SIZE, model="small_cnn", initial=8, per_round=8, budget=16,
        batch_size=8, train_steps=1, eval_steps=1, data_root=tmp_path / "root",
    )  # fmt: skip
    result = invoke("run", *cli_flags(settings), "--out", out)
    assert result.exit_code == 0, result.output
    rounds = pd.read_parquet(out / "rounds.parquet")
    assert list(rounds["labeled"]) == [8, 16]
    assert json.loads((out / "config.json").read_text())["config"]["dataset"] == f"folder:{images}"
