"""Read image files and volumes into 2-D arrays the image processor accepts, through the same readers
and guards as training (:mod:`mtl_hf.data.readers`): what a model sees at ``predict`` is what it saw
in training, and a bad file is a :class:`~mtl_hf.data.DataError` naming it.

Supported inputs (by suffix; a file without suffix is read as DICOM when it has the DICOM preamble):

* ``.png``, ``.jpg``/``.jpeg``, ``.bmp``, ``.tif``/``.tiff``, ``.gif``, ``.webp`` through Pillow: one
  image each, as the training cache stores it (:mod:`mtl_hf.data.readers.pictures`): 8-bit grey and
  RGB stay ``uint8`` (the processor divides by 255); 16-bit grey stays ``uint16``, 32-bit and float
  images are scaled to ``uint16`` (the processor min-max scales them per image); palette images become
  RGB; colour becomes grey only with ``grayscale=True``.
* ``.dcm``/``.dicom`` through pydicom (install ``mtl-hf[dicom]``): one image, or one image per frame of a
  multi-frame object (an ultrasound cine loop), as :mod:`mtl_hf.data.readers.dicom` decodes them for
  training (``MONOCHROME1`` inverted, palette colour applied, grey above 8 bits scaled to ``uint16``
  over all frames).
* ``.nii``/``.nii.gz`` through nibabel (:mod:`mtl_hf.data.readers.nifti`): a 3-D volume (a trailing
  axis of length 1 is dropped),
  reoriented to the closest RAS+ orientation (``nibabel.as_closest_canonical``) and cut into slices
  along ``slice_axis`` (2, axial, by default). Each slice is shown with ``np.rot90``: anterior (or
  superior) up and the patient's left on the left, as nilearn displays it and as
  :mod:`mtl_hf.data` caches BraTS slices. Intensities, by ``intensity``:

  - ``"brain"`` (default): the training data's normalisation
    (:func:`mtl_hf.data.normalization.normalize_volume`, ``minmax`` at percentiles 0.5 and 99.5 of
    the non-zero voxels, background 0), so a model sees the intensities it was trained on;
  - ``"volume"``: min-max over the whole volume;
  - ``"slice"``: min-max per slice.

A slice or frame with a single constant value (background outside the head) carries no image;
``skip_empty=True`` leaves it out.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..data.errors import DataError
from ..data.readers import (
    MAX_CASE_BYTES,
    NiftiHeader,
    decoding,
    read_header,
    read_picture,
    read_volume,
    refuse_over,
)
from ..data.readers import read_dicom as read_dicom_frames
from ..data.readers.dicom import is_dicom
from ..data.readers.suffixes import DICOM_SUFFIXES, IMAGE_SUFFIXES, NIFTI_SUFFIXES
from ..data.readers.suffixes import READABLE_SUFFIXES as SUPPORTED_SUFFIXES
from .choices import INTENSITIES, Intensity

WORKING_BYTES_PER_VOXEL: dict[str, int] = {"brain": 17, "volume": 13, "slice": 9}
"""Bytes per voxel :func:`read_nifti_slices` holds at its peak after decoding, by intensity scaling:
the float32 volume, the slices cut from it and, for ``brain``, the brain mask, the normalised copy and
its percentile temporaries (measured with tracemalloc in the tests)."""


def volume_peak_bytes(header: NiftiHeader, intensity: Intensity) -> int:
    """Estimated peak memory of :func:`read_nifti_slices` from the header alone: the larger of the
    decoding step (the decoded voxels, their float32 copy and the finiteness check: ``itemsize + 9``
    bytes per voxel) and the intensity's working copies, plus one byte per voxel of margin."""
    per_voxel = max(header.itemsize + 9, WORKING_BYTES_PER_VOXEL[intensity]) + 1
    return header.voxels * per_voxel


@dataclass(frozen=True)
class InputImage:
    """One 2-D image to predict on.

    Attributes:
        source: The file it came from.
        index: Slice index (NIfTI, along ``slice_axis``) or frame index (multi-frame DICOM); ``None`` for
            a single 2-D image.
        image: ``(H, W)`` or ``(H, W, C)`` array, ``uint8``, ``uint16``, or float in [0, 1] (NIfTI).
        in_volume: True when the source holds several slices or frames (NIfTI, multi-frame DICOM), whose
            scores are also aggregated per source.
    """

    source: str
    index: int | None
    image: np.ndarray
    in_volume: bool


def kind_of(path: Path) -> Literal["image", "dicom", "nifti"] | None:
    """Which reader handles ``path``, from its suffix (or DICOM preamble); ``None`` if none does."""
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    if name.endswith(IMAGE_SUFFIXES):
        return "image"
    if not path.suffix and path.is_file() and is_dicom(path):
        return "dicom"
    return None


def find_inputs(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[Path], list[DataError]]:
    """Files to read (files as given, folders searched recursively, sorted, for supported files), and
    an error for each given path that is missing, unsupported, or a folder without supported files."""
    files: list[Path] = []
    errors: list[DataError] = []
    for raw in paths:
        path = Path(raw)
        try:
            if path.is_dir():
                found = sorted(p for p in path.rglob("*") if p.is_file() and kind_of(p) is not None)
                if not found:
                    raise DataError(
                        str(path), f"no supported files found (suffixes {', '.join(SUPPORTED_SUFFIXES)})"
                    )
                files.extend(found)
            elif path.is_file():
                if kind_of(path) is None:
                    raise DataError(
                        str(path),
                        f"unsupported file type; supported suffixes are {', '.join(SUPPORTED_SUFFIXES)}",
                    )
                files.append(path)
            else:
                raise DataError(str(path), "no such file or folder")
        except DataError as exc:
            errors.append(exc)
        except (OSError, ValueError) as exc:  # a NUL byte, an over-long name, a link loop, no permission
            errors.append(DataError(str(raw), f"cannot list ({type(exc).__name__}: {exc})"))
    return files, errors


def expand_inputs(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files to read, as :func:`find_inputs`; raises its first error (a :class:`DataError`)."""
    files, errors = find_inputs(paths)
    if errors:
        raise errors[0]
    return files


def read_inputs(
    paths: Sequence[str | os.PathLike[str]],
    *,
    slice_axis: int = 2,
    intensity: Intensity = "brain",
    skip_empty: bool = True,
    grayscale: bool = False,
) -> Iterator[InputImage]:
    """Every image, slice and frame of ``paths`` (files or folders), in order, one at a time."""
    for path in expand_inputs(paths):
        yield from read_file(
            path, slice_axis=slice_axis, intensity=intensity, skip_empty=skip_empty, grayscale=grayscale
        )


def read_file(
    path: str | os.PathLike[str],
    *,
    slice_axis: int = 2,
    intensity: Intensity = "brain",
    skip_empty: bool = True,
    grayscale: bool = False,
) -> Iterator[InputImage]:
    """The images of one file (see the module docstring for each format's conventions).

    Raises:
        DataError: the file is unsupported, damaged, truncated or over the readers' size limits.
    """
    path = Path(path)
    kind = kind_of(path)
    if kind == "image":
        yield InputImage(str(path), None, read_image(path, grayscale), in_volume=False)
    elif kind == "dicom":
        frames = read_dicom(path, grayscale)
        multi = frames.shape[0] > 1
        for i, frame in enumerate(frames):
            if skip_empty and multi and _is_constant(frame):
                continue
            yield InputImage(str(path), i if multi else None, frame, in_volume=multi)
    elif kind == "nifti":
        for i, image in read_nifti_slices(path, slice_axis=slice_axis, intensity=intensity):
            if skip_empty and _is_constant(image):
                continue
            yield InputImage(str(path), i, image, in_volume=True)
    else:
        raise DataError(
            str(path), f"unsupported file type; supported suffixes are {', '.join(SUPPORTED_SUFFIXES)}"
        )


def read_image(path: str | os.PathLike[str], grayscale: bool = False) -> np.ndarray:
    """A PNG, JPEG, BMP, TIFF, GIF or WebP file as ``(H, W)`` or ``(H, W, 3)`` (see module docstring)."""
    return read_picture(path, grayscale)


def read_dicom(path: str | os.PathLike[str], grayscale: bool = False) -> np.ndarray:
    """A DICOM file's frames as ``(F, H, W)`` or ``(F, H, W, 3)`` (``F = 1`` for a single frame)."""
    frames = read_dicom_frames(path, grayscale)
    with decoding(os.fspath(path), "DICOM"):
        return np.stack(frames)


def read_nifti_slices(
    path: str | os.PathLike[str], *, slice_axis: int = 2, intensity: Intensity = "brain"
) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, (H, W) float32 slice in [0, 1])`` along ``slice_axis`` of a RAS+-reoriented volume.

    The whole volume is read and cut before the first slice comes out, so a bad file fails before
    any of its slices is used.
    """
    if slice_axis not in (0, 1, 2):
        raise ValueError(f"slice_axis must be 0, 1 or 2, got {slice_axis}")
    if intensity not in INTENSITIES:
        raise ValueError(f"intensity must be one of {', '.join(INTENSITIES)}, got {intensity!r}")
    header = read_header(path, planar_ok=True)
    needed = volume_peak_bytes(header, intensity)
    refuse_over(header.path, f"reading a volume of shape {header.shape}", needed, MAX_CASE_BYTES)
    with decoding(header.path, "NIfTI volume"):
        data = read_volume(header)
        if intensity == "brain":
            from ..data.normalization import normalize_volume

            data = normalize_volume(data, data != 0, "minmax", (0.5, 99.5))
        elif intensity == "volume":
            data = _minmax(data)
        data = np.moveaxis(data, slice_axis, 0)
        slices = []
        for i in range(data.shape[0]):
            image = np.ascontiguousarray(np.rot90(data[i]))
            slices.append((i, _minmax(image) if intensity == "slice" else image))
        del data
    yield from slices


def _minmax(array: np.ndarray) -> np.ndarray:
    array = array.astype(np.float32, copy=False)
    lo, hi = float(array.min()), float(array.max())
    if hi <= lo:
        return np.zeros_like(array, dtype=np.float32)
    return (array - lo) / (hi - lo)


def _is_constant(image: np.ndarray) -> bool:
    return bool(image.min() == image.max())
