"""Read a BraTS-layout folder: find each patient's volumes, check them, and cut them into labelled slices.

Layout: one folder per patient holding one NIfTI file (``.nii`` or ``.nii.gz``) per modality and a
segmentation, named ``<id>_<suffix>`` (BraTS 2020/2021) or ``<id>-<suffix>`` (BraTS 2023):

==========  ===============  ===============
modality    2020/2021         2023
==========  ===============  ===============
FLAIR       ``_flair``        ``-t2f``
T1          ``_t1``           ``-t1n``
T1 + Gd     ``_t1ce``         ``-t1c``
T2          ``_t2``           ``-t2w``
labels      ``_seg``          ``-seg``
==========  ===============  ===============

Files are grouped by folder and ``<id>`` prefix, so a flat folder holding several patients works too;
the patient id is the prefix. Volumes are brought to RAS+ orientation (``nibabel`` orientation
utilities, no resampling) before slicing, so "axial" means the same plane whatever the file's
voxel order.

Segmentation labels (BraTS): 0 background, 1 necrotic / non-enhancing core, 2 peritumoral oedema,
4 (2020/2021) or 3 (2023) enhancing tumour.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import AXIS_INDEX, BRATS_TUMOUR_LABEL, MODALITY_ALIASES, BratsConfig, canonical_modality
from .errors import DataError
from .normalization import normalize_volume

SEGMENTATION_SUFFIX = "seg"
NIFTI_SUFFIXES = (".nii.gz", ".nii")
MAX_VOLUME_BYTES = 4 * 2**30
"""Largest volume :func:`read_volume` reads (decoded, as float64); a header declaring more is refused
before any voxel is read, so a damaged or hostile header cannot exhaust memory (a BraTS volume is
240 x 240 x 155 voxels, 71 MB as float64)."""


@dataclass
class BratsCase:
    """One patient's files: ``{canonical modality: path}`` and the segmentation (``None`` if absent)."""

    patient_id: str
    folder: str
    modalities: dict[str, str] = field(default_factory=dict)
    segmentation: str | None = None


def split_nifti_name(name: str) -> tuple[str, str] | None:
    """``"BraTS2021_00000_t1ce.nii.gz"`` -> ``("BraTS2021_00000", "t1ce")``; ``None`` if not NIfTI.

    The suffix is what follows the last ``_`` or ``-`` of the stem, so both BraTS conventions parse.
    """
    lower = name.lower()
    for ext in NIFTI_SUFFIXES:
        if lower.endswith(ext):
            stem = name[: -len(ext)]
            cut = max(stem.rfind("_"), stem.rfind("-"))
            if cut <= 0:
                return None
            return stem[:cut], stem[cut + 1 :].lower()
    return None


def find_brats_cases(root: str | os.PathLike[str]) -> list[BratsCase]:
    """All patients under ``root`` (searched recursively), sorted by patient id.

    Raises:
        DataError: ``root`` does not exist or holds no BraTS-named NIfTI file; two files claim the same
            modality of one patient (e.g. both ``.nii`` and ``.nii.gz``); two folders hold the same
            patient id.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(str(root), "data folder not found")
    cases: dict[tuple[str, str], BratsCase] = {}
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in sorted(filenames):
            parsed = split_nifti_name(name)
            if parsed is None:
                continue
            prefix, suffix = parsed
            if suffix != SEGMENTATION_SUFFIX and suffix not in MODALITY_ALIASES:
                continue
            path = os.path.join(dirpath, name)
            case = cases.setdefault((dirpath, prefix), BratsCase(patient_id=prefix, folder=dirpath))
            if suffix == SEGMENTATION_SUFFIX:
                if case.segmentation is not None:
                    raise DataError(path, f"second segmentation for patient {prefix} ({case.segmentation})")
                case.segmentation = path
            else:
                modality = MODALITY_ALIASES[suffix]
                if modality in case.modalities:
                    raise DataError(
                        path, f"second {modality} volume for patient {prefix} ({case.modalities[modality]})"
                    )
                case.modalities[modality] = path
    if not cases:
        raise DataError(str(root), "no BraTS NIfTI files (<id>_flair.nii.gz, <id>-t2f.nii.gz, ...) found")
    by_id: dict[str, BratsCase] = {}
    for case in cases.values():
        if case.patient_id in by_id:
            raise DataError(
                case.folder, f"patient id {case.patient_id} also found in {by_id[case.patient_id].folder}"
            )
        by_id[case.patient_id] = case
    return [by_id[k] for k in sorted(by_id)]


def read_volume(path: str, *, integer: bool = False, keep_dtype: bool = False) -> np.ndarray:
    """A NIfTI volume as a 3-D array in RAS+ voxel order (a trailing axis of length 1 is dropped).

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        integer: Read a label map: values must be whole numbers; returned as ``int32``. Otherwise the
            scaled intensities are returned as float32 and must be finite.
        keep_dtype: Intensities in the dtype nibabel decodes them to (e.g. ``int16``), not float32:
            saves a pass over the volume when the caller converts anyway.

    Raises:
        DataError: unreadable or truncated file, not 3-D, an empty or oversized shape, voxels that are
            not real numbers (complex, RGB), NaN/inf intensities, non-integer labels or labels outside
            the ``int32`` range.
    """
    import nibabel as nib
    from nibabel.orientations import apply_orientation, io_orientation

    try:
        image: Any = nib.load(path)
        shape = tuple(int(n) for n in image.shape)
        while len(shape) > 3 and shape[-1] == 1:
            shape = shape[:-1]
        if len(shape) != 3:
            raise DataError(path, f"expected a 3-D volume, got shape {tuple(image.shape)}")
        if min(shape) < 1:
            raise DataError(path, f"empty volume: shape {shape}")
        if int(np.prod(shape, dtype=np.float64)) * 8 > MAX_VOLUME_BYTES:
            raise DataError(
                path, f"shape {shape} is larger than a volume can be (over {MAX_VOLUME_BYTES // 2**30} GiB)"
            )
        data = np.asarray(image.dataobj).reshape(shape)
        data = apply_orientation(data, io_orientation(image.affine))
    except DataError:
        raise
    except Exception as exc:  # nibabel, gzip and zlib each raise their own kinds
        raise DataError(path, f"cannot read NIfTI volume ({type(exc).__name__}: {exc})") from exc
    if data.dtype.kind not in "biuf":
        raise DataError(path, f"voxels of type {data.dtype} are not real numbers (complex or RGB data)")
    if integer:
        if data.dtype.kind == "f":
            if not np.isfinite(data).all():
                raise DataError(path, "label map contains NaN or inf")
            if not np.array_equal(data, np.round(data)):
                raise DataError(path, "label map has non-integer values")
        labels = data.astype(np.int32)
        if not np.array_equal(labels, data):
            raise DataError(path, "label map has values outside the int32 range")
        return labels
    if not keep_dtype:
        data = data.astype(np.float32, copy=False)
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise DataError(path, f"volume contains {bad} NaN or inf voxels")
    return data


@dataclass
class CaseVolumes:
    """One patient's volumes, checked and normalised, in RAS+ axis order.

    ``images`` ``(C, X, Y, Z)`` float, ``segmentation`` ``(X, Y, Z)`` uint8, ``brain`` ``(X, Y, Z)`` bool.
    They are views of arrays laid out slice by slice along the configured plane, so cutting slices
    reads contiguous memory.
    """

    images: np.ndarray
    segmentation: np.ndarray
    brain: np.ndarray
    files: list[str]


def load_case(case: BratsCase, config: BratsConfig) -> CaseVolumes:
    """Read the requested modalities and the segmentation of ``case`` and normalise each modality.

    Raises:
        DataError: a modality or the segmentation is missing or bad; shapes differ; the segmentation
            holds a label outside ``config.segmentation_labels``.
    """
    wanted = [canonical_modality(m) for m in config.modalities]
    missing = [m for m in wanted if m not in case.modalities]
    if missing:
        raise DataError(
            case.folder,
            f"patient {case.patient_id}: missing modality {', '.join(missing)} "
            f"(found: {', '.join(sorted(case.modalities)) or 'none'})",
        )
    if case.segmentation is None:
        raise DataError(case.folder, f"patient {case.patient_id}: no segmentation (<id>_seg / <id>-seg)")
    files = [case.modalities[m] for m in wanted]
    segmentation = read_volume(case.segmentation, integer=True)
    volumes = []
    for path in files:
        volume = read_volume(path, keep_dtype=True)
        if volume.shape != segmentation.shape:
            raise DataError(
                path, f"shape {volume.shape} differs from its segmentation's {segmentation.shape}"
            )
        volumes.append(volume)
    axis = AXIS_INDEX[config.axis]
    labels = np.ascontiguousarray(np.moveaxis(segmentation, axis, 0))
    present = _labels_present(labels)
    unexpected = sorted(set(present) - set(config.segmentation_labels))
    if unexpected:
        raise DataError(
            case.segmentation,
            f"labels {unexpected} outside the declared set {config.segmentation_labels}",
        )
    # Slice-first buffers: (C, S, A, B) with S the slicing axis; exposed as RAS-ordered views.
    seg = labels.astype(np.uint8)  # the declared labels are bytes (checked by BratsConfig)
    brain = np.zeros(seg.shape, dtype=bool)
    moved = [np.moveaxis(v, axis, 0) for v in volumes]
    for volume in moved:
        brain |= volume != 0
    norm = config.normalization
    images = np.empty((len(moved), *seg.shape), dtype=config.storage_dtype)
    scratch = images if images.dtype == np.float32 else np.empty(seg.shape, dtype=np.float32)
    for c, volume in enumerate(moved):
        target = scratch[c] if scratch is images else scratch
        normalize_volume(volume, brain, norm.method, norm.percentiles, out=target)
        if scratch is not images:
            images[c] = scratch
    return CaseVolumes(
        images=np.moveaxis(images, 1, axis + 1),
        segmentation=np.moveaxis(seg, 0, axis),
        brain=np.moveaxis(brain, 0, axis),
        files=files,
    )


def _labels_present(labels: np.ndarray) -> list[int]:
    """Distinct values of a contiguous integer label map. Label maps hold a handful of small values, so
    one comparison per value in ``[min, max]`` is far cheaper than sorting or hashing the volume."""
    lo, hi = int(labels.min()), int(labels.max())
    if hi - lo <= 32:
        return [v for v in range(lo, hi + 1) if (labels == v).any()]
    return np.unique(labels).tolist()


@dataclass
class SliceCounts:
    """Slices of one case: kept, dropped for too little brain."""

    kept: int = 0
    dropped: int = 0


def iter_case_slices(
    volumes: CaseVolumes, case: BratsCase, config: BratsConfig, root: str, counts: SliceCounts
) -> Iterator[dict[str, Any]]:
    """Rows of the cached data set, one per kept slice of ``volumes`` (see :mod:`mtl_hf.data.cache`)."""
    axis = AXIS_INDEX[config.axis]
    images = np.moveaxis(volumes.images, axis + 1, 1)  # (C, S, A, B)
    seg = np.moveaxis(volumes.segmentation, axis, 0)
    brain = np.moveaxis(volumes.brain, axis, 0)
    tumour = seg != 0 if config.tumour_labels is None else np.isin(seg, config.tumour_labels)
    tumour_pixels = tumour.sum(axis=(1, 2))
    brain_fraction = brain.mean(axis=(1, 2))
    source = ";".join(os.path.relpath(p, root) for p in volumes.files)
    for i in range(seg.shape[0]):
        if brain_fraction[i] < config.min_brain_fraction:
            counts.dropped += 1
            continue
        image = np.ascontiguousarray(np.rot90(images[:, i], axes=(1, 2)))
        mask = np.ascontiguousarray(np.rot90(seg[i]))
        counts.kept += 1
        image_bytes, mask_bytes = image.tobytes(), mask.tobytes()
        yield {
            "image": image_bytes,
            "image_shape": list(image.shape),
            "image_dtype": str(image.dtype),
            "image_crc32": zlib.crc32(image_bytes),
            "mask": mask_bytes,
            "mask_crc32": zlib.crc32(mask_bytes),
            BRATS_TUMOUR_LABEL: int(tumour_pixels[i] >= config.min_tumour_pixels),
            "tumour_pixels": int(tumour_pixels[i]),
            "brain_fraction": float(brain_fraction[i]),
            "patient_id": case.patient_id,
            "sample_id": f"{case.patient_id}/{i:03d}",
            "source": source,
            "slice_index": i,
        }


def brats_features() -> Any:
    """The ``datasets.Features`` of a cached BraTS data set.

    ``image`` holds the slice's ``(C, H, W)`` array as raw bytes (``image_shape``, ``image_dtype``):
    decoding is one ``np.frombuffer`` (see :func:`mtl_hf.data.decode_image`), far cheaper in data-loader
    workers than Arrow's nested lists. ``mask`` holds the segmentation slice (uint8, ``(H, W)``).
    Raw bytes carry no checksum of their own (unlike PNG's CRCs), so ``image_crc32`` and ``mask_crc32``
    hold their CRC-32, checked at every decode: a cache damaged on disk is reported, never trained on.
    """
    from datasets import Features, List, Value

    return Features(
        {
            "image": Value("binary"),
            "image_shape": List(Value("int32"), length=3),
            "image_dtype": Value("string"),
            "image_crc32": Value("int64"),
            "mask": Value("binary"),
            "mask_crc32": Value("int64"),
            BRATS_TUMOUR_LABEL: Value("int64"),
            "tumour_pixels": Value("int32"),
            "brain_fraction": Value("float32"),
            "patient_id": Value("string"),
            "sample_id": Value("string"),
            "source": Value("string"),
            "slice_index": Value("int32"),
        }
    )
