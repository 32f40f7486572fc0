"""Decoding one image file (Pillow) into a square uint8 (C, H, W) array.

Every image is turned upright (EXIF orientation), converted to grayscale (``L``, 1 channel) or
``RGB`` (3 channels), resized so that its shorter side is `size` (bilinear, antialiased when
shrinking, like torchvision's ``Resize``) and center-cropped to `size` x `size`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# Pillow modes without colour: 1-bit, 8-bit, 16/32-bit integer, float, and grayscale with alpha
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def is_image_file(name: str) -> bool:
    """Whether `name` has one of the image suffixes robustal reads (case-insensitive)."""
    return name.lower().endswith(SUFFIXES)


@contextmanager
def open_image(data: bytes) -> Iterator[Image.Image]:
    """The image in `data`, opened lazily; `ValueError` when Pillow knows no format of it."""
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:  # its message shows a BytesIO object's address, not the reason
        raise ValueError("not an image in a format Pillow reads") from None
    with image:
        yield image


def image_mode(data: bytes) -> str:
    """The Pillow mode of the image in `data`, read from its header (raises on non-images)."""
    with open_image(data) as image:
        return image.mode


def is_grayscale(mode: str) -> bool:
    """Whether an image of Pillow `mode` has a single colour channel (palette images count as colour)."""
    return mode in GRAYSCALE_MODES


def resize_and_crop(image: Image.Image, size: int) -> Image.Image:
    """`image` resized to shorter side `size` (aspect ratio kept), then its central `size` x `size`."""
    width, height = image.size
    scale = size / min(width, height)
    resized = (max(size, round(width * scale)), max(size, round(height * scale)))
    if resized != image.size:
        image = image.resize(resized, Image.Resampling.BILINEAR)
    left, top = (resized[0] - size) // 2, (resized[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def decode_image(data: bytes, size: int, grayscale: bool) -> np.ndarray:
    """The image in `data` as uint8 (1, size, size) when `grayscale`, else (3, size, size).

    Raises whatever Pillow raises on a damaged file (callers record it and skip the file).
    """
    with open_image(data) as image:
        # JPEGs decode at 1/2, 1/4 or 1/8 scale when that still covers `size`: photos decode much faster
        image.draft(None, (size, size))
        image = ImageOps.exif_transpose(image)  # cameras store the rotation in EXIF, not in the pixels
        image = resize_and_crop(image.convert("L" if grayscale else "RGB"), size)
        array = np.asarray(image, dtype=np.uint8)
    return array[None] if grayscale else array.transpose(2, 0, 1)
