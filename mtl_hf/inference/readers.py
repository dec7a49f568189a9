"""Read image files and volumes into 2-D arrays the image processor accepts.

Supported inputs (by suffix; a file without suffix is read as DICOM when it has the DICOM preamble):

* ``.png``, ``.jpg``/``.jpeg``, ``.bmp``, ``.tif``/``.tiff`` through Pillow: one image each. 8-bit images
  stay ``uint8`` (the processor divides by 255); 16-bit and other integer images stay integer (the
  processor min-max scales them per image); floating-point images are min-max scaled to [0, 1] here.
* ``.dcm``/``.dicom`` through pydicom (install ``mtl-hf[dicom]``): one image, or one image per frame of a
  multi-frame object (an ultrasound cine loop). ``MONOCHROME1`` images are inverted so that bright
  means high signal, ``PALETTE COLOR`` images go through their colour table (to RGB), and pixel data
  that is not ``uint8`` is then min-max scaled to [0, 1] over all frames.
* ``.nii``/``.nii.gz`` through nibabel: a 3-D volume (a trailing axis of length 1 is dropped),
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
from typing import Any, Literal

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
SUPPORTED_SUFFIXES = IMAGE_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES

Intensity = Literal["brain", "volume", "slice"]
INTENSITIES: tuple[str, ...] = ("brain", "volume", "slice")


@dataclass(frozen=True)
class InputImage:
    """One 2-D image to predict on.

    Attributes:
        source: The file it came from.
        index: Slice index (NIfTI, along ``slice_axis``) or frame index (multi-frame DICOM); ``None`` for
            a single 2-D image.
        image: ``(H, W)`` or ``(H, W, C)`` array, ``uint8``, another integer type, or float in [0, 1].
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
    if not path.suffix and path.is_file() and _has_dicom_preamble(path):
        return "dicom"
    return None


def expand_inputs(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files to read: files as given, folders searched recursively (sorted) for supported files."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and kind_of(p) is not None)
            if not found:
                raise ValueError(
                    f"{path}: no supported files found (suffixes {', '.join(SUPPORTED_SUFFIXES)})"
                )
            files.extend(found)
        elif path.is_file():
            if kind_of(path) is None:
                raise ValueError(
                    f"{path}: unsupported file type; supported suffixes are {', '.join(SUPPORTED_SUFFIXES)}"
                )
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def read_inputs(
    paths: Sequence[str | os.PathLike[str]],
    *,
    slice_axis: int = 2,
    intensity: Intensity = "brain",
    skip_empty: bool = True,
) -> Iterator[InputImage]:
    """Every image, slice and frame of ``paths`` (files or folders), in order, one at a time."""
    for path in expand_inputs(paths):
        yield from read_file(path, slice_axis=slice_axis, intensity=intensity, skip_empty=skip_empty)


def read_file(
    path: str | os.PathLike[str],
    *,
    slice_axis: int = 2,
    intensity: Intensity = "brain",
    skip_empty: bool = True,
) -> Iterator[InputImage]:
    """The images of one file (see the module docstring for each format's conventions)."""
    path = Path(path)
    kind = kind_of(path)
    if kind == "image":
        yield InputImage(str(path), None, read_image(path), in_volume=False)
    elif kind == "dicom":
        frames = read_dicom(path)
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
        raise ValueError(
            f"{path}: unsupported file type; supported suffixes are {', '.join(SUPPORTED_SUFFIXES)}"
        )


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """A PNG, JPEG, BMP or TIFF file as ``(H, W)`` or ``(H, W, C)`` (see module docstring)."""
    from PIL import Image

    with Image.open(path) as opened:
        img: Image.Image = opened
        img.load()
        if img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
            img = img.convert("RGBA" if "A" in img.mode or "transparency" in img.info else "RGB")
        elif img.mode in ("1", "LA", "La"):
            img = img.convert("L")
        array = np.array(img)  # a writable copy (torch warns on read-only arrays)
    if array.dtype.kind == "f":
        array = _minmax(array)
    return array


def read_dicom(path: str | os.PathLike[str]) -> np.ndarray:
    """A DICOM file's frames as ``(F, H, W)`` or ``(F, H, W, C)`` (``F = 1`` for a single frame)."""
    try:
        import pydicom
    except ImportError as err:
        raise ImportError(f"{path}: reading DICOM needs pydicom: pip install 'mtl-hf[dicom]'") from err
    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise ValueError(f"{path}: DICOM file has no pixel data")
    array = np.asarray(ds.pixel_array)
    photometric = str(getattr(ds, "PhotometricInterpretation", ""))
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        array = np.asarray(apply_color_lut(array, ds))
    samples = 3 if photometric == "PALETTE COLOR" else int(getattr(ds, "SamplesPerPixel", 1))
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames == 1:
        array = array[None]
    expected_dims = 4 if samples > 1 else 3
    if array.ndim != expected_dims:
        raise ValueError(f"{path}: unexpected DICOM pixel array shape {array.shape}")
    if photometric == "MONOCHROME1":
        array = array.max() - array + array.min()
    if array.dtype != np.uint8:
        array = _minmax(array.astype(np.float32))
    return array


def read_nifti_slices(
    path: str | os.PathLike[str], *, slice_axis: int = 2, intensity: Intensity = "brain"
) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, (H, W) float32 slice in [0, 1])`` along ``slice_axis`` of a RAS+-reoriented volume."""
    import nibabel as nib

    if slice_axis not in (0, 1, 2):
        raise ValueError(f"slice_axis must be 0, 1 or 2, got {slice_axis}")
    if intensity not in INTENSITIES:
        raise ValueError(f"intensity must be one of {', '.join(INTENSITIES)}, got {intensity!r}")
    img: Any = nib.load(os.fspath(path))
    img = nib.as_closest_canonical(img)
    data = np.asarray(img.get_fdata(dtype=np.float32))
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D volume, got shape {data.shape}; save one volume per file")
    if not np.isfinite(data).all():
        raise ValueError(f"{path}: volume contains NaN or inf")
    if intensity == "brain":
        from ..data.normalization import normalize_volume

        data = normalize_volume(data, data != 0, "minmax", (0.5, 99.5))
    elif intensity == "volume":
        data = _minmax(data)
    data = np.moveaxis(data, slice_axis, 0)
    for i in range(data.shape[0]):
        image = np.ascontiguousarray(np.rot90(data[i]))
        yield i, (_minmax(image) if intensity == "slice" else image)


def _minmax(array: np.ndarray) -> np.ndarray:
    array = array.astype(np.float32, copy=False)
    lo, hi = float(array.min()), float(array.max())
    if hi <= lo:
        return np.zeros_like(array, dtype=np.float32)
    return (array - lo) / (hi - lo)


def _is_constant(image: np.ndarray) -> bool:
    return bool(image.min() == image.max())


def _has_dicom_preamble(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:] == b"DICM"
