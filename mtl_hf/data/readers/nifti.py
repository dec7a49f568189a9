"""The NIfTI reader (``.nii``, ``.nii.gz``) of training, ``predict`` and ``explain``, with its guards.

:func:`read_header` looks at the header alone: shape, data type, scaling. It refuses a file that is not
NIfTI, not 3-D, empty, or larger than :data:`~mtl_hf.data.readers.limits.MAX_VOLUME_BYTES`, before any
voxel is read. :func:`read_volume` then decodes the voxels, in RAS+ voxel order (``nibabel``'s
orientation utilities, no resampling); every failure (truncated gzip, damaged header, out of memory)
is a :class:`~mtl_hf.data.DataError` naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError
from .limits import MAX_VOLUME_BYTES, decoding, refuse_over


@dataclass(frozen=True)
class NiftiHeader:
    """What a NIfTI header says about its volume.

    Attributes:
        path: The file.
        shape: Voxels per axis in the file's own order (a trailing axis of length 1 dropped; a 2-D
            image given a third axis of length 1 when read with ``planar_ok``).
        itemsize: Bytes per voxel once decoded (the stored type, or 8 when the header scales values,
            which ``nibabel`` returns as float64).
        image: The ``nibabel`` image (its voxels not read yet).
    """

    path: str
    shape: tuple[int, int, int]
    itemsize: int
    image: Any

    @property
    def voxels(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def decoded_bytes(self) -> int:
        """Bytes of the voxels as decoded, before any conversion."""
        return self.voxels * self.itemsize


def read_header(path: str | os.PathLike[str], *, planar_ok: bool = False) -> NiftiHeader:
    """Load and check the header of ``path`` (no voxel is read).

    Args:
        planar_ok: Accept a 2-D image (as one slice) instead of refusing it.

    Raises:
        DataError: not a readable NIfTI file, not 3-D (or 2-D with ``planar_ok``), empty, or declaring
            more than :data:`MAX_VOLUME_BYTES` (as float64).
    """
    import nibabel as nib

    path = os.fspath(path)
    with decoding(path, "NIfTI volume"):
        image: Any = nib.load(path)
        declared = tuple(int(n) for n in image.shape)
        shape = declared
        while len(shape) > 3 and shape[-1] == 1:
            shape = shape[:-1]
        if planar_ok and len(shape) == 2:
            shape = (*shape, 1)
        if len(shape) != 3:
            raise DataError(path, f"expected a 3-D volume, got shape {declared}")
        if min(shape) < 1:
            raise DataError(path, f"empty volume: shape {shape}")
        voxels = int(np.prod(shape, dtype=np.float64))
        refuse_over(path, f"a volume of shape {shape} (as float64)", voxels * 8, MAX_VOLUME_BYTES)
        dtype = np.dtype(image.get_data_dtype())
        proxy = image.dataobj
        scaled = any(
            v is not None and np.isfinite(v) and v != d
            for v, d in ((getattr(proxy, "slope", 1.0), 1.0), (getattr(proxy, "inter", 0.0), 0.0))
        )
    return NiftiHeader(path, (shape[0], shape[1], shape[2]), 8 if scaled else max(dtype.itemsize, 1), image)


def read_volume(
    path: str | os.PathLike[str] | NiftiHeader,
    *,
    integer: bool = False,
    keep_dtype: bool = False,
    planar_ok: bool = False,
) -> np.ndarray:
    """A NIfTI volume as a 3-D array in RAS+ voxel order (a trailing axis of length 1 is dropped).

    Args:
        path: ``.nii`` or ``.nii.gz`` file, or its header from :func:`read_header`.
        integer: Read a label map: values must be whole numbers; returned as ``int32``. Otherwise the
            scaled intensities are returned as float32 and must be finite.
        keep_dtype: Intensities in the dtype nibabel decodes them to (e.g. ``int16``), not float32:
            saves a pass over the volume when the caller converts anyway.
        planar_ok: Accept a 2-D image, returned as ``(X, Y, 1)``.

    Raises:
        DataError: unreadable or truncated file, not 3-D, an empty or oversized shape, voxels that are
            not real numbers (complex, RGB), NaN/inf intensities, non-integer labels or labels outside
            the ``int32`` range.
    """
    from nibabel.orientations import apply_orientation, io_orientation

    header = path if isinstance(path, NiftiHeader) else read_header(path, planar_ok=planar_ok)
    where = header.path
    with decoding(where, "NIfTI volume"):
        data = np.asarray(header.image.dataobj).reshape(header.shape)
        data = apply_orientation(data, io_orientation(header.image.affine))
        if data.dtype.kind not in "biuf":
            raise DataError(where, f"voxels of type {data.dtype} are not real numbers (complex or RGB data)")
        if integer:
            return _labels(where, data)
        if not keep_dtype:
            data = data.astype(np.float32, copy=False)
        if data.dtype.kind == "f" and not np.isfinite(data).all():
            bad = int((~np.isfinite(data)).sum())
            raise DataError(where, f"volume contains {bad} NaN or inf voxels")
    return data


def _labels(path: str, data: np.ndarray) -> np.ndarray:
    if data.dtype.kind == "f":
        if not np.isfinite(data).all():
            raise DataError(path, "label map contains NaN or inf")
        if not np.array_equal(data, np.round(data)):
            raise DataError(path, "label map has non-integer values")
    labels = data.astype(np.int32)
    if not np.array_equal(labels, data):
        raise DataError(path, "label map has values outside the int32 range")
    return labels


def canonical_geometry(path: str | os.PathLike[str]) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of a NIfTI volume in its closest RAS+ orientation, from the header alone."""
    import nibabel as nib

    header = read_header(path, planar_ok=True)
    ornt = nib.orientations.io_orientation(header.image.affine)
    canonical = tuple(header.shape[int(axis)] for axis in ornt[:, 0])
    affine = header.image.affine @ nib.orientations.inv_ornt_aff(ornt, header.shape)
    return (canonical[0], canonical[1], canonical[2]), affine
