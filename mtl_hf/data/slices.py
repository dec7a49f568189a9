"""How a volume's 2-D slices are stored in the cache: resized, quantised, compressed, checksummed.

A BraTS patient at full size is 155 slices of 240 x 240 per modality: 36 MB per modality as float32,
about 54 GB for the 1,251 patients of BraTS 2021 with four modalities. Stored the way they are used,
they take a fraction of that:

* **resized** to the training size at build time (``data.image_size``, when set and ``brats.resize``
  / ``volumes.resize`` is on), with the image processor's own resampling (bilinear with antialiasing;
  masks by nearest neighbour, ``nearest-exact``), so the transform's resize becomes a no-op and
  training sees the same pixels;
* **quantised** (``storage_dtype: uint8``, the default, or ``uint16``): each channel of each slice is
  mapped linearly from its own ``[min, max]`` to the integer range, and ``image_scale`` /
  ``image_offset`` (one float per channel) are stored beside it; decoding gives
  ``q * scale + offset``, within half a quantisation step (``(max - min) / 510`` for uint8) of the
  value before storage. ``float16`` and ``float32`` store the values themselves;
* **compressed**: background (zeros) and masks compress well. ``compression: lz4`` (the default; LZ4
  blocks) decompresses about three times as fast as ``zlib`` (level 1; files a few percent smaller),
  which matters in a loader worker that has a few milliseconds per image for everything; ``none``
  stores the bytes as they are.

Every stored image and mask carries the CRC-32 of its stored bytes (``image_crc32``, ``mask_crc32``),
checked at every decode (besides zlib's own Adler-32), so a cache damaged on disk is reported, never
trained on. An LZ4 block is decompressed to exactly the size its row's shape and dtype give, never to
a size read from the stored bytes.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import lz4.block
import numpy as np

StorageDtype = Literal["uint8", "uint16", "float16", "float32"]
Compression = Literal["lz4", "zlib", "none"]

QUANTISED: dict[str, int] = {"uint8": 255, "uint16": 65535}


@dataclass(frozen=True)
class SliceStorage:
    """How slices are stored: ``dtype``, ``compression`` and the side to resize to (``None``: as read)."""

    dtype: StorageDtype = "uint8"
    compression: Compression = "lz4"
    size: int | None = None


def resize_slices(images: np.ndarray, masks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(S, C, H, W)`` float32 images (bilinear, antialiased) and ``(S, H, W)`` uint8 masks (nearest)
    resized to ``size x size``, as the image processor and the transform resize them."""
    import torch
    import torch.nn.functional as F

    if images.shape[-2:] == (size, size):
        return images, masks
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        m = torch.from_numpy(np.ascontiguousarray(masks))[:, None].float()
        m = F.interpolate(m, size=(size, size), mode="nearest-exact")[:, 0].round().to(torch.uint8)
    return x.numpy(), m.numpy()


def encode_slices(
    images: np.ndarray, masks: np.ndarray | None, storage: SliceStorage, chunk: int = 16
) -> Iterator[dict[str, Any]]:
    """The cache columns of each slice of ``images`` ``(S, C, H, W)`` float32 and ``masks`` ``(S, H, W)``
    (``None``: no masks), ``chunk`` slices at a time (so the temporary arrays stay a few MB whatever
    the volume)."""
    for start in range(0, images.shape[0], chunk):
        part = None if masks is None else masks[start : start + chunk]
        yield from _encode_chunk(images[start : start + chunk], part, storage)


def _encode_chunk(
    images: np.ndarray, masks: np.ndarray | None, storage: SliceStorage
) -> list[dict[str, Any]]:
    if masks is None:
        masks = np.zeros((images.shape[0], *images.shape[2:]), np.uint8)
        rows = _encode_chunk(images, masks, storage)
        return [{**row, "mask": None, "mask_crc32": None} for row in rows]
    if storage.size is not None:
        images, masks = resize_slices(images, masks, storage.size)
    n, c = images.shape[:2]
    if storage.dtype in QUANTISED:
        top = QUANTISED[storage.dtype]
        lo = images.min(axis=(2, 3))
        hi = images.max(axis=(2, 3))
        scale = np.where(hi > lo, (hi - lo) / top, 1.0).astype(np.float32)
        q = images - lo[:, :, None, None]
        q /= scale[:, :, None, None]
        np.rint(q, out=q)
        np.clip(q, 0, top, out=q)
        stored = q.astype(storage.dtype)
        offsets, scales = lo.astype(np.float32), scale
    else:
        stored = images.astype(storage.dtype)
        offsets = scales = np.zeros((n, 0), np.float32)
    rows = []
    shape = list(stored.shape[1:])
    for i in range(n):
        image_bytes = _pack(stored[i].tobytes(), storage.compression)
        mask_bytes = _pack(np.ascontiguousarray(masks[i]).tobytes(), storage.compression)
        rows.append(
            {
                "image": image_bytes,
                "image_shape": shape,
                "image_dtype": storage.dtype,
                "image_encoding": storage.compression,
                "image_scale": scales[i].tolist() if c and scales.size else [],
                "image_offset": offsets[i].tolist() if c and offsets.size else [],
                "image_crc32": zlib.crc32(image_bytes),
                "mask": mask_bytes,
                "mask_crc32": zlib.crc32(mask_bytes),
            }
        )
    return rows


def _pack(data: bytes, compression: str) -> bytes:
    if compression == "lz4":
        return lz4.block.compress(data, store_size=False)
    return zlib.compress(data, 1) if compression == "zlib" else data


def _unpack(
    data: bytes | bytearray | memoryview, compression: str | None, size: int
) -> bytes | bytearray | memoryview:
    """The stored bytes of ``size`` bytes (an image's or mask's, from its shape and dtype) decompressed."""
    if compression == "lz4":
        try:
            return lz4.block.decompress(data, uncompressed_size=size)
        except lz4.block.LZ4BlockError as exc:
            raise ValueError(f"lz4: {exc}") from exc
    if compression != "zlib":
        return data
    try:
        return zlib.decompress(data)
    except zlib.error as exc:
        raise ValueError(f"zlib: {exc}") from exc


def slice_features() -> dict[str, Any]:
    """The ``datasets`` features of the stored slice columns."""
    from datasets import List, Value

    return {
        "image": Value("binary"),
        "image_shape": List(Value("int32"), length=3),
        "image_dtype": Value("string"),
        "image_encoding": Value("string"),
        "image_scale": List(Value("float32")),
        "image_offset": List(Value("float32")),
        "image_crc32": Value("int64"),
        "mask": Value("binary"),
        "mask_crc32": Value("int64"),
    }


def check_crc32(data: bytes | bytearray | memoryview, expected: int | None) -> None:
    """Raise ``ValueError`` when ``data``'s CRC-32 is not ``expected`` (``None``: nothing to check)."""
    if expected is not None and zlib.crc32(data) != int(expected):
        raise ValueError(f"CRC-32 mismatch: stored {int(expected):#010x}, computed {zlib.crc32(data):#010x}")


def stored_slice(example: Mapping[str, Any]) -> np.ndarray:
    """A stored slice's ``(C, H, W)`` array as stored (its dtype, read-only), after the CRC-32 check
    and decompression."""
    data = example["image"]
    check_crc32(data, example.get("image_crc32"))
    dtype, shape = np.dtype(example["image_dtype"]), tuple(example["image_shape"])
    raw = _unpack(data, example.get("image_encoding"), dtype.itemsize * math.prod(shape))
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def is_quantised(example: Mapping[str, Any]) -> bool:
    """Whether the row stores integers with a per-channel scale (decoded as ``q * scale + offset``)."""
    return np.dtype(example["image_dtype"]).kind == "u" and bool(example.get("image_scale"))


def dequantise(stored: np.ndarray, scales: Any, offsets: Any) -> np.ndarray:
    """``stored * scale + offset`` as float32, per channel: ``stored`` ``(..., C, H, W)``, ``scales`` and
    ``offsets`` ``(..., C)``. The same float32 operations whether one slice or a batch is decoded."""
    out = np.multiply(stored, np.asarray(scales, np.float32)[..., None, None], dtype=np.float32)
    offsets = np.asarray(offsets, np.float32)
    if offsets.any():  # a zero minimum (a zero background) adds nothing
        out += offsets[..., None, None]
    return out


def decode_slice_image(example: Mapping[str, Any]) -> np.ndarray:
    """A stored slice as ``(C, H, W)``: float32 for quantised storage, else its stored float dtype."""
    array = stored_slice(example)
    if is_quantised(example):
        return dequantise(array, example["image_scale"], example["image_offset"])
    return array.copy()  # a writable copy: torch refuses to wrap read-only buffers without a warning


def decode_slice_mask(example: Mapping[str, Any]) -> np.ndarray:
    """A stored slice's ``(H, W)`` uint8 label mask."""
    data = example["mask"]
    check_crc32(data, example.get("mask_crc32"))
    shape = tuple(example["image_shape"])[1:]
    raw = _unpack(data, example.get("image_encoding"), math.prod(shape))
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape).copy()
