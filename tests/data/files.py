"""Helpers writing tiny real NIfTI and image files (nibabel, Pillow) for the data tests."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from PIL import Image

NAMING = {
    "2021": {"flair": "_flair", "t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "seg": "_seg"},
    "2023": {"flair": "-t2f", "t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "seg": "-seg"},
}
SHAPE = (12, 10, 8)


def make_volumes(
    rng: np.random.Generator, shape: Sequence[int] = SHAPE, tumour: bool = True
) -> dict[str, np.ndarray]:
    """Four modalities (brain = a box inside the volume, background 0) and a segmentation."""
    brain = np.zeros(shape, dtype=bool)
    brain[1:-1, 1:-1, 1:-1] = True
    out = {}
    for k, name in enumerate(("flair", "t1", "t1ce", "t2")):
        out[name] = np.where(brain, rng.uniform(100, 1000, size=shape) * (k + 1), 0).astype(np.int16)
    seg = np.zeros(shape, dtype=np.uint8)
    if tumour:
        seg[3:7, 3:6, 2:5] = 2
        seg[4:6, 4:5, 3:4] = 1
        seg[5, 4, 3] = 4
    out["seg"] = seg
    return out


def write_case(
    folder: Path,
    patient: str,
    volumes: dict[str, np.ndarray],
    naming: str = "2021",
    ext: str = ".nii.gz",
    affine: np.ndarray | None = None,
) -> dict[str, Path]:
    """Write the volumes of one patient in BraTS naming; returns ``{modality: path}``."""
    folder.mkdir(parents=True, exist_ok=True)
    affine = np.eye(4) if affine is None else affine
    paths = {}
    for name, data in volumes.items():
        path = folder / f"{patient}{NAMING[naming][name]}{ext}"
        nib.save(nib.Nifti1Image(data, affine), path)
        paths[name] = path
    return paths


def brats_config(root: Path, **brats: Any) -> Any:
    from mtl_hf.data import DataConfig
    from mtl_hf.options import from_dict

    extra = {k: brats.pop(k) for k in ("skip_bad", "split", "sampling", "seed") if k in brats}
    return from_dict(DataConfig, {"kind": "brats", "root": str(root), "brats": brats, **extra})


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def nifti_header_bytes(shape: tuple[int, ...], dtype: type = np.uint8) -> bytes:
    """The 352 bytes a nibabel-written ``.nii`` starts with (header and empty extension block)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_qform(np.eye(4), code=1)
    header.set_sform(np.eye(4), code=1)
    header["vox_offset"] = 352
    return header.binaryblock + b"\0\0\0\0"


def sparse_nifti(path: Path, shape: tuple[int, int, int], dtype: type = np.uint8) -> Path:
    """A complete, valid ``.nii`` of zeros that takes no disk space: nibabel's header, then a hole."""
    with open(path, "wb") as f:
        f.write(nifti_header_bytes(shape, dtype))
        f.truncate(352 + int(np.prod(shape)) * np.dtype(dtype).itemsize)
    return path
