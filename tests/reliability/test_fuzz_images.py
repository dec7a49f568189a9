"""Fuzz the 2-D image reader of the data layer (and its lesion-mask reader) with hypothesis.

Real images in every format and mode Pillow writes (PNG, JPEG, TIFF, BMP, GIF, WebP; grey, 16-bit,
float, palette, colour, alpha, bi-level), then damaged: truncated, bytes flipped, garbage appended,
absurd sizes declared in a valid PNG header (decompression bombs). Every example must end in rows
that decode to what they claim, or in :class:`~mtl_hf.data.DataError` naming the file.
"""

from __future__ import annotations

import io
import struct
import tempfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from mtl_hf.data import DataError
from mtl_hf.data.images import read_image_frames, read_mask

from .fuzzing import CI_EXAMPLES, SLOW_EXAMPLES, budget, tally, time_limit

FORMATS = {
    "PNG": ("png", ["1", "L", "LA", "I;16", "RGB", "RGBA", "P"]),
    "JPEG": ("jpg", ["L", "RGB", "CMYK"]),
    "TIFF": ("tif", ["1", "L", "I;16", "I", "F", "RGB", "RGBA", "CMYK"]),
    "BMP": ("bmp", ["1", "L", "P", "RGB"]),
    "GIF": ("gif", ["L", "P"]),
    "WEBP": ("webp", ["RGB", "RGBA"]),
}


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_declaring(width: int, height: int, rows: int = 1) -> bytes:
    """A well-formed PNG whose header declares ``width`` x ``height`` grey pixels (data for ``rows``)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * (min(width, 4096) + 1) * rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", pixels)
        + png_chunk(b"IEND", b"")
    )


@st.composite
def image_files(draw: st.DrawFn) -> tuple[bytes, str]:
    """``(file bytes, suffix)``: a real image file, possibly damaged."""
    if draw(st.integers(0, 9)) == 0:
        width = draw(st.sampled_from([0, 1, 70000, 2**31 - 1]))
        height = draw(st.sampled_from([0, 1, 70000, 2**31 - 1]))
        return png_declaring(width, height), "png"
    name = draw(st.sampled_from(sorted(FORMATS)))
    suffix, modes = FORMATS[name]
    mode = draw(st.sampled_from(modes))
    height, width = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    base = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    image = base.convert(mode) if mode not in ("I;16", "F", "I") else base.convert("L").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=name)
    data = bytearray(buffer.getvalue())
    for _ in range(draw(st.integers(0, 3))):
        damage = draw(st.sampled_from(["flip", "truncate", "append", "zero"]))
        if damage == "flip" and data:
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        elif damage == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif damage == "append":
            data += draw(st.binary(max_size=64))
        elif data:
            start = draw(st.integers(0, len(data) - 1))
            data[start : start + draw(st.integers(1, 16))] = b"\x00" * len(data[start : start + 16])
    suffix = draw(st.sampled_from([suffix, suffix, "png", "dcm", ""]))  # names can lie about the format
    return bytes(data), suffix


def check_frames(path: Path, grayscale: bool) -> str:
    try:
        with time_limit():
            frames = read_image_frames(str(path), grayscale)
    except DataError as exc:
        assert exc.path == str(path) and str(exc).startswith(f"{path}: ")
        return "refused"
    assert frames
    for _index, stored, (height, width) in frames:
        with Image.open(io.BytesIO(stored)) as decoded:
            array = np.asarray(decoded)  # what the cache hands the transforms must decode
            assert decoded.size == (width, height) and array.shape[:2] == (height, width)
            assert decoded.mode in ("L", "I;16", "RGB") or decoded.mode.startswith("I;16")
            if grayscale:
                assert array.ndim == 2
    return "accepted"


def frames_property(payload: tuple[bytes, str], grayscale: bool) -> None:
    content, suffix = payload
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / (f"image.{suffix}" if suffix else "image")
        path.write_bytes(content)
        tally("image reader", check_frames(path, grayscale))


def mask_property(payload: tuple[bytes, str]) -> None:
    content, suffix = payload
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"mask.{suffix or 'png'}"
        path.write_bytes(content)
        try:  # the size the image claims, so that a readable mask matches its image
            with Image.open(path) as claimed:
                size = (claimed.height, claimed.width)
        except Exception:
            size = (8, 8)
        try:
            with time_limit():
                stored = read_mask(str(path), size)
        except DataError as exc:
            assert exc.path == str(path)
            tally("mask reader", "refused")
            return
        with Image.open(io.BytesIO(stored)) as decoded:
            assert decoded.mode == "L" and decoded.size == (size[1], size[0])
        tally("mask reader", "accepted")


@budget(CI_EXAMPLES)
@given(payload=image_files(), grayscale=st.booleans())
def test_damaged_images_read_or_refused(payload: tuple[bytes, str], grayscale: bool) -> None:
    frames_property(payload, grayscale)


@pytest.mark.slow
@budget(SLOW_EXAMPLES, explore=True)
@given(payload=image_files(), grayscale=st.booleans())
def test_damaged_images_read_or_refused_long(payload: tuple[bytes, str], grayscale: bool) -> None:
    frames_property(payload, grayscale)


@budget(CI_EXAMPLES // 3)
@given(payload=image_files())
def test_damaged_masks_read_or_refused(payload: tuple[bytes, str]) -> None:
    mask_property(payload)


@pytest.mark.slow
@budget(SLOW_EXAMPLES // 3, explore=True)
@given(payload=image_files())
def test_damaged_masks_read_or_refused_long(payload: tuple[bytes, str]) -> None:
    mask_property(payload)


HOSTILE = {
    "empty file": (b"", "png"),
    "text named .png": (b"patient,label\n1,0\n", "png"),
    "PNG signature only": (b"\x89PNG\r\n\x1a\n", "png"),
    "PNG declaring 70000 x 70000 pixels": (png_declaring(70000, 70000), "png"),
    "PNG declaring 2^31 - 1 pixels wide": (png_declaring(2**31 - 1, 1), "png"),
    "PNG declaring 0 x 0 pixels": (png_declaring(0, 0), "png"),
    "JPEG start marker only": (b"\xff\xd8\xff", "jpg"),
    "DICOM preamble without data": (b"\x00" * 128 + b"DICM", ""),
    # A 1 x 1 TIFF whose strip has no rows: Pillow reads it from its path but not from memory, where
    # the cache decodes it; found by the fuzz test above.
    "TIFF read from its path but not from memory": (
        bytes.fromhex(
            "49492a000800000009000001040001000000010000000101040001000000010000000201030001000000080000000301"
            "0300010000000100000006010300010000000100000011010400010000007a0000001601040001000000000000000000"
            "000000000000000000010000001701040001000000010000001c0103000100000001000000000000007f"
        ),
        "tif",
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_images_are_refused(tmp_path: Path, name: str, figures: Counter[str]) -> None:
    content, suffix = HOSTILE[name]
    path = tmp_path / (f"image.{suffix}" if suffix else "image")
    path.write_bytes(content)
    with time_limit(), pytest.raises(DataError) as info:
        read_image_frames(str(path))
    assert info.value.path == str(path)
    figures["hand-written bad inputs refused"] += 1
