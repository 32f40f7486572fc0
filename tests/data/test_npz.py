"""A user's own .npz file as a dataset: accepted layouts, the validation rule, clear errors."""

import numpy as np
import pytest
import torch

from robustal.config import make_config
from robustal.data import dataset_info, load_dataset
from robustal.errors import ConfigError, DataError

RNG = np.random.default_rng(0)
NCHW = RNG.integers(0, 256, (10, 3, 6, 6), dtype=np.uint8)
TEST_NCHW = RNG.integers(0, 256, (6, 3, 6, 6), dtype=np.uint8)
Y_TRAIN = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
Y_TEST = np.array([4, 3, 2, 1, 0, 5])


def save(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "layout, convert",
    [
        ("NCHW", lambda x: x),
        ("NHWC", lambda x: x.transpose(0, 2, 3, 1)),
    ],
)
def test_channel_layouts_give_nchw(tmp_path, layout, convert):
    path = save(tmp_path / f"{layout}.npz", x_train=convert(NCHW), y_train=Y_TRAIN, x_test=convert(TEST_NCHW), y_test=Y_TEST)
    dataset = load_dataset(str(path))
    assert dataset.name == str(path) and dataset.image_shape == (3, 6, 6)
    np.testing.assert_array_equal(dataset.train.images.numpy(), NCHW)
    assert dataset.train.labels.dtype == torch.int64 and dataset.train.labels.tolist() == Y_TRAIN.tolist()
    # no x_val: the first half of the test split validates
    np.testing.assert_array_equal(dataset.validation.images.numpy(), TEST_NCHW[:3])
    np.testing.assert_array_equal(dataset.test.images.numpy(), TEST_NCHW[3:])
    assert dataset.num_classes == 6  # largest label (5, only in the test split) + 1


def test_grayscale_nhw_and_column_labels(tmp_path):
    images = RNG.integers(0, 256, (4, 5, 5), dtype=np.uint8)
    path = save(tmp_path / "gray.npz", x_train=images, y_train=Y_TRAIN[:4, None], x_test=images, y_test=Y_TRAIN[:4])
    dataset = load_dataset(str(path))
    assert dataset.image_shape == (1, 5, 5)
    np.testing.assert_array_equal(dataset.train.images[:, 0].numpy(), images)
    assert dataset.train.labels.tolist() == [0, 1, 2, 3]


def test_explicit_validation_split(tmp_path):
    x_val = RNG.integers(0, 256, (2, 3, 6, 6), dtype=np.uint8)
    path = save(
        tmp_path / "val.npz", x_train=NCHW, y_train=Y_TRAIN, x_test=TEST_NCHW, y_test=Y_TEST, x_val=x_val, y_val=np.array([1, 5])
    )
    dataset = load_dataset(str(path))
    np.testing.assert_array_equal(dataset.validation.images.numpy(), x_val)
    assert len(dataset.test) == 6 and dataset.num_classes == 6


def test_registry_entry_reads_only_headers_and_resizing_works(tmp_path):
    path = tmp_path / "compressed.npz"
    np.savez_compressed(path, x_train=NCHW.transpose(0, 2, 3, 1), y_train=Y_TRAIN, x_test=TEST_NCHW, y_test=Y_TEST)
    info = dataset_info(str(path))
    assert (info.name, info.default_model, info.native_size, info.default_size, info.augment) == (str(path), "small_cnn", 6, 6, False)
    assert info.description == "compressed.npz: 10 train, 6 test images of 3x6x6"
    assert load_dataset(str(path), image_size=8).image_shape == (3, 8, 8)


def test_run_config_accepts_an_npz_path(tmp_path):
    path = save(tmp_path / "mine.npz", x_train=NCHW, y_train=Y_TRAIN, x_test=TEST_NCHW, y_test=Y_TEST)
    config = make_config(dataset=str(path), initial=2, per_round=2, budget=4)
    assert config.model_name == "small_cnn"


GOOD = dict(x_train=NCHW, y_train=Y_TRAIN, x_test=TEST_NCHW, y_test=Y_TEST)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(x_train=NCHW.astype(np.float32) / 255), r"x_train: images must be uint8 0..255, got float32; convert them"),
        (dict(x_train=np.zeros((10, 6, 7), np.uint8)), r"x_train: image shape \(10, 6, 7\) is not one of \(N, H, W\)"),
        (dict(x_train=np.zeros((10, 2, 6, 6), np.uint8)), r"image shape \(10, 2, 6, 6\) is not one of"),
        (dict(y_train=Y_TRAIN[:9]), r"x_train holds 10 images but y_train has shape \(9,\)"),
        (dict(y_train=Y_TRAIN.astype(np.float64)), r"y_train: labels must be integers 0..K-1, got float64"),
        (dict(y_test=-Y_TEST), r"y_test: labels must be >= 0, got -5"),
        (dict(x_test=np.zeros((6, 1, 6, 6), np.uint8)), r"every split needs the same image shape"),
        (dict(x_val=TEST_NCHW), r"give both x_val and y_val, or neither"),
        (dict(x_train=np.zeros((0, 3, 6, 6), np.uint8), y_train=np.zeros(0, np.int64)), r"x_train is empty"),
    ],
)
def test_bad_content_is_named(tmp_path, changes, message):
    path = save(tmp_path / "bad.npz", **{**GOOD, **changes})
    with pytest.raises(DataError, match=message) as error:
        load_dataset(str(path))
    assert str(path) in str(error.value)


SKIPPED = r"labels must be the classes 0..K-1 with none skipped"


@pytest.mark.parametrize(
    "changes, message",
    [
        # one label 255 used to build a 256-class model silently, one of 10**12 a 256 TB one
        (dict(y_test=np.array([4, 3, 2, 1, 0, 255])), rf"{SKIPPED}; found 6 distinct labels \(0, 1, 2, 3, 4, 255\), the largest 255"),
        (dict(y_train=np.full(10, 10**12)), rf"{SKIPPED}; found 7 distinct labels .*the largest 1000000000000"),
        (dict(y_train=np.arange(1, 11), y_test=np.arange(1, 7)), rf"{SKIPPED}; .*renumber them"),
        (dict(y_train=np.zeros(10, np.int64), y_test=np.zeros(6, np.int64)), r"1 class; a classification dataset needs at least 2"),
        # a test split of one image used to leave an empty validation split that scored 100 %
        (dict(x_test=TEST_NCHW[:1], y_test=Y_TEST[:1]), r"the test split holds 1 image\(s\); at least 2 are needed"),
        (dict(x_val=TEST_NCHW[:0], y_val=Y_TEST[:0]), r"x_val is empty"),
    ],
)
def test_labels_and_split_sizes_are_checked_before_any_compute(tmp_path, changes, message):
    path = save(tmp_path / "bad.npz", **{**GOOD, **changes})
    with pytest.raises(DataError, match=message) as error:
        load_dataset(str(path))
    assert str(path) in str(error.value)


def test_images_larger_than_the_bound_are_refused_by_the_settings(tmp_path):
    images = np.zeros((2, 513, 513), np.uint8)
    path = save(tmp_path / "large.npz", x_train=images, y_train=np.array([0, 1]), x_test=images, y_test=np.array([0, 1]))
    with pytest.raises(ConfigError, match=r"image size 513 of .*large.npz is outside 1..512"):
        make_config(dataset=str(path), initial=1, per_round=1, budget=2)
    assert make_config(dataset=str(path), initial=1, per_round=1, budget=2, image_size=32).image_size == 32


def test_missing_arrays_are_listed(tmp_path):
    path = save(tmp_path / "partial.npz", x_train=NCHW, y_train=Y_TRAIN, x_test=TEST_NCHW)
    with pytest.raises(DataError, match=r"missing y_test; a dataset .npz needs x_train, y_train, x_test, y_test"):
        load_dataset(str(path))
    with pytest.raises(DataError, match=r"no array 'x_train'"):
        dataset_info(str(save(tmp_path / "empty.npz", y_train=Y_TRAIN)))


def test_header_check_rejects_float_images_before_loading(tmp_path):
    path = save(tmp_path / "floats.npz", **{**GOOD, "x_train": NCHW.astype(np.float32)})
    with pytest.raises(DataError, match="images must be uint8"):
        dataset_info(str(path))


def test_not_an_npz_file_and_missing_file(tmp_path):
    bogus = tmp_path / "bogus.npz"
    bogus.write_bytes(b"not a zip archive")
    for describe in (dataset_info, load_dataset):
        with pytest.raises(DataError, match=rf"{bogus}: not a readable .npz file"):
            describe(str(bogus))
        with pytest.raises(DataError, match=r"missing dataset file .*absent.npz"):
            describe(str(tmp_path / "absent.npz"))


def test_unknown_names_mention_npz_paths():
    with pytest.raises(ConfigError, match=r"unknown dataset 'imagenet'; valid choices: cifar10, digits, .*; or a path to a .npz file"):
        dataset_info("imagenet")
