"""A folder of DICOM slices (one series: CT, PET, MR) read as one volume in RAS+ order, real units.

Slices are ordered by their position along the slice normal (``ImagePositionPatient`` projected on
the normal of ``ImageOrientationPatient``), pixel values go through ``RescaleSlope`` /
``RescaleIntercept`` (Hounsfield units for CT, activity concentration for PET), and the volume is
reoriented from DICOM's patient LPS frame to the closest RAS+ voxel order, as NIfTI volumes are
(:func:`mtl_hf.data.readers.read_volume`), so that "axial" means the same plane for both.

Guards: every file must belong to one series (one ``SeriesInstanceUID``), share rows, columns and
orientation, hold one frame of grey pixels, and the declared size of the whole series is checked
against :data:`~mtl_hf.data.readers.MAX_VOLUME_BYTES` before any pixel is decoded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .readers.limits import MAX_VOLUME_BYTES, decoding


@dataclass
class SeriesVolume:
    """A DICOM series as a volume: ``data`` ``(X, Y, Z)`` float32 in RAS+ order and the first slice's
    header (``header``), from which PET SUV factors are read (:mod:`mtl_hf.data.pet`)."""

    data: np.ndarray
    header: Any


def read_dicom_series(folder: str | os.PathLike[str]) -> SeriesVolume:
    """Read every DICOM file in ``folder`` as one series (see module docstring); a single DICOM file
    is read as a series of one slice.

    Raises:
        DataError: no DICOM file, several series, inconsistent slices, colour or multi-frame pixels, a
            declared size over the limit, or a file that does not decode.
    """
    try:
        import pydicom
    except ImportError as exc:
        raise DataError(str(folder), "reading DICOM needs pydicom: pip install 'mtl-hf[dicom]'") from exc
    from nibabel.orientations import apply_orientation, io_orientation

    root = Path(folder)
    if root.is_file():
        files = [root]
    else:
        files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    headers = []
    for path in files:
        try:
            headers.append((path, pydicom.dcmread(path, stop_before_pixels=True)))
        except Exception as exc:  # pydicom raises many kinds for files that are not DICOM
            raise DataError(str(path), f"cannot read DICOM header ({type(exc).__name__}: {exc})") from exc
    if not headers:
        raise DataError(str(root), "no DICOM files in the series folder")
    first = headers[0][1]
    series = {str(getattr(h, "SeriesInstanceUID", "")) for _, h in headers}
    if len(series) > 1:
        raise DataError(str(root), f"{len(series)} series in one folder; give one folder per series")
    rows, cols = int(first.Rows), int(first.Columns)
    if rows * cols * len(headers) * 8 > MAX_VOLUME_BYTES:
        raise DataError(str(root), f"{len(headers)} slices of {rows}x{cols} are larger than a volume can be")
    orientation = np.asarray(getattr(first, "ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), dtype=np.float64)
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    positions: list[float] = []
    for path, h in headers:
        if (int(h.Rows), int(h.Columns)) != (rows, cols):
            raise DataError(str(path), f"slice size {h.Rows}x{h.Columns} differs from {rows}x{cols}")
        if int(getattr(h, "NumberOfFrames", 1) or 1) != 1 or int(getattr(h, "SamplesPerPixel", 1)) != 1:
            raise DataError(str(path), "a series slice must be one frame of grey pixels")
        position = getattr(h, "ImagePositionPatient", None)
        where = float(np.dot(np.asarray(position, np.float64), normal)) if position is not None else None
        positions.append(where if where is not None else float(getattr(h, "InstanceNumber", len(positions))))
    order = np.argsort(positions, kind="stable")
    slices = []
    for k in order:
        path = headers[k][0]
        with decoding(str(path), "DICOM"):  # any failure, MemoryError included, names the file
            ds = pydicom.dcmread(path)
            pixels = np.asarray(ds.pixel_array, dtype=np.float32)
        if pixels.shape != (rows, cols):
            raise DataError(str(path), f"pixel data of shape {pixels.shape}, not {rows}x{cols}")
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
        slices.append(pixels * slope + intercept)
    # (rows, cols, slices) runs along (col_dir, row_dir, normal) in LPS: columns index the row
    # direction. Voxel axes: i (column) -> row_dir, j (row) -> col_dir, k -> normal.
    volume = np.stack(slices, axis=-1).transpose(1, 0, 2)  # (i, j, k)
    if not np.isfinite(volume).all():
        raise DataError(str(root), "series contains NaN or inf values")
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, 0] = lps_to_ras @ row_dir
    affine[:3, 1] = lps_to_ras @ col_dir
    affine[:3, 2] = lps_to_ras @ normal
    data = apply_orientation(volume, io_orientation(affine))
    return SeriesVolume(data=np.ascontiguousarray(data, dtype=np.float32), header=first)
