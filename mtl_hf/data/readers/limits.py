"""The memory bounds every reader checks from a file's header before decoding it, and the guard that
turns any decoding failure (including running out of memory) into a :class:`~mtl_hf.data.DataError`
naming the file.

The bounds are checked before any pixel or voxel is decoded, so a tiny hostile file (a 1 KB NIfTI
header declaring 4000³ voxels, a gzip or deflate bomb, a PNG declaring 30000² pixels) is refused by
name, in training, ``predict`` and ``explain`` alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..errors import DataError

GiB = 2**30

MAX_VOLUME_BYTES = 4 * GiB
"""Largest NIfTI volume read, counted as its voxels decoded to float64 (8 bytes each): 512 Mi voxels,
e.g. 800³. A BraTS volume (240 × 240 × 155) is 71 MB as float64."""

MAX_CASE_BYTES = 8 * GiB
"""Largest peak memory one read may take, estimated from the headers before any voxel is read: one
BraTS case (all its modalities and its segmentation, with the loader's working copies), or one volume
read by ``predict``/``explain``. A four-modality BraTS case of 240 × 240 × 155 takes about 0.5 GB."""

MAX_IMAGE_PIXELS = 2**27
"""Largest 2-D image (PNG, JPEG, BMP, TIFF, ...) or DICOM pixel data read, in pixels over all frames
(134 M: a 11585² image, or 436 frames of 640 × 480). Pillow's own decompression-bomb limit is larger."""

MAX_PICTURE_FILE_BYTES = GiB
"""Largest 2-D picture file whose bytes are read into memory to be cached (an uncompressed RGBA picture
of :data:`MAX_IMAGE_PIXELS` pixels is 512 MiB)."""

MAX_DICOM_BYTES = GiB
"""Largest DICOM file decoded, in bytes after inflating a deflated transfer syntax (a 1 MB deflated
file can hold gigabytes of zeros)."""


@contextlib.contextmanager
def decoding(path: str, what: str) -> Iterator[None]:
    """Run a decoder: its :class:`DataError` passes, anything else (a truncated gzip's ``EOFError``, a
    library's own error class, ``MemoryError``) becomes ``DataError(path, "cannot read <what> ...")``."""
    try:
        yield
    except DataError:
        raise
    except MemoryError as exc:
        raise DataError(path, f"cannot read {what}: out of memory while decoding it") from exc
    except Exception as exc:  # every decoder raises its own kinds (nibabel, gzip, zlib, Pillow, pydicom)
        raise DataError(path, f"cannot read {what} ({type(exc).__name__}: {exc})") from exc


def refuse_over(path: str, what: str, needed: int, limit: int, unit: str = "bytes") -> None:
    """``DataError`` when ``needed`` exceeds ``limit`` (both in ``unit``), saying both."""
    if needed > limit:
        raise DataError(path, f"{what} needs {_size(needed, unit)}, over the limit of {_size(limit, unit)}")


def _size(n: int, unit: str) -> str:
    if unit != "bytes":
        return f"{n:,} {unit}"
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / 2**20:.1f} MiB"
