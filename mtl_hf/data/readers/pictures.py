"""The reader of 2-D picture files (PNG, JPEG, BMP, TIFF, GIF, WebP) of training, ``predict`` and
``explain``, with its guards.

The header is read first: a picture of more than :data:`~mtl_hf.data.readers.limits.MAX_IMAGE_PIXELS`
pixels (Pillow's decompression-bomb error included) is refused before decoding; a truncated or
damaged file, or one that is no picture, gives a :class:`~mtl_hf.data.DataError` naming it.

Pixels keep their kind: grey (``L``, 8 bit; ``I;16``, 16 bit) stays grey, colour becomes RGB (palette
applied, alpha dropped); 32-bit integer and float pictures are min-max scaled to 16 bits. Colour
becomes grey (ITU-R 601 luma, Pillow's ``convert("L")``) only when asked (``grayscale=True``).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import DataError
from .limits import MAX_IMAGE_PIXELS, MAX_PICTURE_FILE_BYTES, decoding, refuse_over

KEEP_MODES = ("L", "I;16", "RGB")
"""Modes whose decoded pixels are used as they are (no conversion)."""


@contextlib.contextmanager
def open_picture(
    path: str | os.PathLike[str], what: str = "image", data: bytes | None = None
) -> Iterator[Any]:
    """The decoded Pillow image of ``path`` (or of the encoded ``data``, which ``path`` then only names
    in errors, e.g. a data set's row), its size checked before decoding.

    Raises:
        DataError: no picture, damaged or truncated, or larger than :data:`MAX_IMAGE_PIXELS`.
    """
    from PIL import Image

    where = os.fspath(path)
    with decoding(where, what):
        try:
            opened = Image.open(where if data is None else io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise DataError(where, f"{what} is too large to read ({exc})") from exc
        with opened as image:
            width, height = image.size
            refuse_over(where, f"{what} of {width} x {height}", width * height, MAX_IMAGE_PIXELS, "pixels")
            image.load()
            yield image


def picture_array(image: Any, grayscale: bool = False) -> np.ndarray:
    """Pixels of a decoded Pillow image as ``(H, W)`` ``uint8``/``uint16`` or ``(H, W, 3)`` ``uint8``
    (see the module docstring for the conversions)."""
    mode = image.mode
    if mode in ("I", "F", "I;16B", "I;16L"):
        return to_uint16(np.asarray(image))
    if mode in ("1", "L", "LA", "I;16"):
        return np.array(image.convert("L") if mode != "I;16" else image)
    rgb = image if mode == "RGB" else image.convert("RGB")
    return np.array(rgb.convert("L") if grayscale else rgb)


def read_picture(path: str | os.PathLike[str], grayscale: bool = False) -> np.ndarray:
    """The pixels of a picture file (:func:`open_picture`, then :func:`picture_array`)."""
    with open_picture(path) as image, decoding(os.fspath(path), "image"):
        return picture_array(image, grayscale)


def to_uint16(array: np.ndarray) -> np.ndarray:
    """Min-max scale ``array`` (any shape, any real type) to the full ``uint16`` range, in place of a
    float64 copy of the whole array: one frame (first axis) at a time, so the working memory is one
    frame's, not eight bytes per pixel of the whole array."""
    lo, hi = float(array.min()), float(array.max())
    out = np.empty(array.shape, dtype=np.uint16)
    if hi <= lo:
        out[...] = 0
        return out
    rows = array.reshape(array.shape[0], -1) if array.ndim > 1 else array[None]
    target = out.reshape(rows.shape)
    for i in range(rows.shape[0]):
        target[i] = np.round((rows[i].astype(np.float64) - lo) / (hi - lo) * 65535)
    return out


def picture_file_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of the picture file ``path``, its size checked against :data:`MAX_PICTURE_FILE_BYTES`
    first. What is cached is decoded from these bytes, not from the file: Pillow can read a damaged
    file from its path (memory-mapped) that it cannot read from memory, and the cache decodes from
    memory.

    Raises:
        DataError: the file is over the limit, or cannot be read.
    """
    where = os.fspath(path)
    with decoding(where, "image"):
        refuse_over(where, "picture file", os.path.getsize(where), MAX_PICTURE_FILE_BYTES)
        with open(where, "rb") as f:
            return f.read()


def check_pixels(path: str, what: str, pixels: int) -> None:
    """Refuse ``pixels`` over :data:`MAX_IMAGE_PIXELS` (for readers that learn the size otherwise)."""
    refuse_over(path, what, pixels, MAX_IMAGE_PIXELS, "pixels")
