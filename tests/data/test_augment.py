"""Random crop (zero padding 4) + horizontal flip on tensors: invariants and reproducibility."""

import itertools

import pytest
import torch

from robustal.data.augment import augment
from robustal.errors import ConfigError


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(count=64, size=8, dtype=torch.uint8, seed=0):
    values = torch.randint(1, 256, (count, 3, size, size), generator=generator(seed))  # no zeros: padding shows
    return values.to(dtype) if dtype == torch.uint8 else values.to(dtype) / 255


def shifted(image: torch.Tensor, dy: int, dx: int, flip: bool, padding: int = 4) -> torch.Tensor:
    """What a crop at offset (dy, dx) of the zero-padded image (then a mirror) looks like."""
    channels, height, width = image.shape
    padded = torch.zeros(channels, height + 2 * padding, width + 2 * padding, dtype=image.dtype)
    padded[:, padding : padding + height, padding : padding + width] = image
    crop = padded[:, dy : dy + height, dx : dx + width]
    return crop.flip(-1) if flip else crop


def transformations(original, result, padding=4):
    """Every (dy, dx, flip) that maps `original` to `result`."""
    offsets = range(2 * padding + 1)
    return [
        (dy, dx, flip)
        for dy, dx, flip in itertools.product(offsets, offsets, (False, True))
        if torch.equal(shifted(original, dy, dx, flip, padding), result)
    ]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_shape_dtype_and_input_kept(dtype):
    batch = images(dtype=dtype)
    before = batch.clone()
    result = augment(batch, generator(1))
    assert result.shape == batch.shape and result.dtype == dtype and result.is_contiguous()
    assert torch.equal(batch, before)


def test_every_output_is_a_padded_crop_of_its_input_possibly_mirrored():
    batch = images(count=40)
    result = augment(batch, generator(2))
    found = [transformations(original, output) for original, output in zip(batch, result)]
    assert all(len(matches) == 1 for matches in found)  # random content: exactly one explanation
    used = [matches[0] for matches in found]
    assert 10 <= sum(flip for _, _, flip in used) <= 30  # flips happen about half the time
    assert len({(dy, dx) for dy, dx, _ in used}) >= 20  # offsets vary
    assert any(dy != 4 or dx != 4 for dy, dx, _ in used)  # content is really shifted


def test_float_images_get_the_same_crops_as_uint8():
    batch = images(count=16)
    as_uint8 = augment(batch, generator(3))
    as_float = augment(batch.float() / 255, generator(3))
    assert torch.equal((as_float * 255).round().to(torch.uint8), as_uint8)


def test_reproducible_for_a_seed_and_different_across_seeds():
    batch = images()
    assert torch.equal(augment(batch, generator(5)), augment(batch, generator(5)))
    assert not torch.equal(augment(batch, generator(5)), augment(batch, generator(6)))


def test_generator_advances_so_epochs_differ():
    batch, shared = images(), generator(7)
    assert not torch.equal(augment(batch, shared), augment(batch, shared))


def test_no_padding_means_only_flips():
    batch = images(count=32)
    result = augment(batch, generator(8), padding=0)
    mirrored = [torch.equal(output, original.flip(-1)) for original, output in zip(batch, result)]
    assert all(torch.equal(output, original) or flip for original, output, flip in zip(batch, result, mirrored))
    assert 0 < sum(mirrored) < len(batch)


def test_rejects_unbatched_input_and_negative_padding():
    with pytest.raises(ConfigError, match=r"batch \(N, C, H, W\), got shape \(3, 8, 8\)"):
        augment(images()[0], generator(0))
    with pytest.raises(ConfigError, match="padding must be >= 0"):
        augment(images(), generator(0), padding=-1)
