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
4 (2020/2021) or 3 (2023) enhancing tumour. A case's convention is read from its segmentation's name
(``<id>_seg``: 2020/2021, ``<id>-seg``: 2023) and decides the labels of the sub-regions target.

Targets derived per slice (``brats.targets``): ``tumour`` (binary), ``subregions`` (multi-label:
necrotic core, oedema, enhancing) and ``tumour_area`` (continuous: tumour pixels over brain pixels).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import (
    AXIS_INDEX,
    BRATS_AREA_TARGET,
    BRATS_SUBREGIONS_TARGET,
    BRATS_TUMOUR_LABEL,
    MODALITY_ALIASES,
    BratsConfig,
    canonical_modality,
)
from .errors import DataError
from .normalization import normalize_volume
from .readers import MAX_CASE_BYTES, NiftiHeader, read_header, read_volume, refuse_over
from .readers.suffixes import NIFTI_SUFFIXES
from .slices import SliceStorage, encode_slices, slice_features

SEGMENTATION_SUFFIX = "seg"


@dataclass
class BratsCase:
    """One patient's files: ``{canonical modality: path}`` and the segmentation (``None`` if absent), and
    the BraTS naming convention of the segmentation: ``"2020"`` (2020/2021, ``<id>_seg``) or ``"2023"``
    (``<id>-seg``)."""

    patient_id: str
    folder: str
    modalities: dict[str, str] = field(default_factory=dict)
    segmentation: str | None = None
    naming: str = "2020"


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
                case.naming = "2023" if name[len(prefix)] == "-" else "2020"
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

    The headers are read first and the peak memory of the whole load estimated from them
    (:func:`case_peak_bytes`); a case over :data:`~mtl_hf.data.readers.MAX_CASE_BYTES` is refused
    before any voxel is read.

    Raises:
        DataError: a modality or the segmentation is missing or bad; shapes differ; the segmentation
            holds a label outside ``config.segmentation_labels``; the case needs more memory than the
            bound.
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
    seg_header = read_header(case.segmentation)
    headers = [read_header(path) for path in files]
    peak = case_peak_bytes(
        seg_header, headers, np.dtype(np.float32).itemsize
    )  # channels normalised as float32
    what = f"patient {case.patient_id} ({len(files)} volumes of {seg_header.shape} and a segmentation)"
    refuse_over(case.folder, what, peak, MAX_CASE_BYTES)
    axis = AXIS_INDEX[config.axis]
    segmentation = read_volume(seg_header, integer=True)
    present = _labels_present(segmentation)
    unexpected = sorted(set(present) - set(config.segmentation_labels))
    if unexpected:
        raise DataError(
            case.segmentation,
            f"labels {unexpected} outside the declared set {config.segmentation_labels}",
        )
    # Slice-first buffers: (C, S, A, B) with S the slicing axis; exposed as RAS-ordered views. The
    # declared labels are bytes (checked by BratsConfig).
    shape = segmentation.shape
    seg = np.ascontiguousarray(np.moveaxis(segmentation, axis, 0), dtype=np.uint8)
    del segmentation
    brain = np.zeros(seg.shape, dtype=bool)
    moved = []
    for header in headers:
        volume = read_volume(header, keep_dtype=True)
        if volume.shape != shape:
            raise DataError(header.path, f"shape {volume.shape} differs from its segmentation's {shape}")
        volume = np.moveaxis(volume, axis, 0)
        brain |= volume != 0
        moved.append(volume)
    norm = config.normalization
    images = np.empty((len(moved), *seg.shape), dtype=np.float32)
    for c in range(len(headers)):
        volume = moved.pop(0)  # each decoded volume is freed once normalised
        normalize_volume(volume, brain, norm.method, norm.percentiles, out=images[c])
        del volume
    return CaseVolumes(
        images=np.moveaxis(images, 1, axis + 1),
        segmentation=np.moveaxis(seg, 0, axis),
        brain=np.moveaxis(brain, 0, axis),
        files=files,
    )


CASE_WORKING_BYTES_PER_VOXEL = 32
"""Bytes per voxel the case loader needs besides the decoded volumes and the normalised channels:
the int32 label map with its checks (reading the segmentation), or the uint8 segmentation, the brain
mask, a float32 scratch volume and the normalisation's temporaries (its percentile copies, z-score's
float64 values). Checked against the measured peak in the tests."""


def case_peak_bytes(segmentation: NiftiHeader, volumes: list[NiftiHeader], storage_itemsize: int) -> int:
    """Estimated peak memory of :func:`load_case` from the headers alone: every decoded volume (they
    are held together to form the brain mask), the normalised channels, the segmentation's decoded
    voxels and :data:`CASE_WORKING_BYTES_PER_VOXEL`."""
    voxels = max([segmentation.voxels, *(h.voxels for h in volumes)])
    decoded = sum(h.decoded_bytes for h in volumes) + segmentation.decoded_bytes
    return decoded + voxels * (len(volumes) * storage_itemsize + CASE_WORKING_BYTES_PER_VOXEL)


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
    volumes: CaseVolumes,
    case: BratsCase,
    config: BratsConfig,
    root: str,
    counts: SliceCounts,
    storage: SliceStorage | None = None,
) -> Iterator[dict[str, Any]]:
    """Rows of the cached data set, one per kept slice of ``volumes`` (see :mod:`mtl_hf.data.cache`),
    stored as ``storage`` says (:mod:`mtl_hf.data.slices`; default: the config's dtype and
    compression, at the volumes' own size)."""
    if storage is None:
        storage = SliceStorage(config.storage_dtype, config.compression)
    axis = AXIS_INDEX[config.axis]
    images = np.moveaxis(volumes.images, axis + 1, 1)  # (C, S, A, B)
    seg = np.moveaxis(volumes.segmentation, axis, 0)
    brain = np.moveaxis(volumes.brain, axis, 0)
    tumour = seg != 0 if config.tumour_labels is None else np.isin(seg, config.tumour_labels)
    tumour_pixels = tumour.sum(axis=(1, 2))
    brain_fraction = brain.mean(axis=(1, 2))
    source = ";".join(os.path.relpath(p, root) for p in volumes.files)
    kept = [i for i in range(seg.shape[0]) if brain_fraction[i] >= config.min_brain_fraction]
    counts.dropped += seg.shape[0] - len(kept)
    counts.kept += len(kept)
    if not kept:
        return
    derived = derived_targets(seg, brain, tumour_pixels, case, config)
    stack = np.rot90(np.moveaxis(images[:, kept], 1, 0), axes=(2, 3))  # (K, C, H, W)
    masks = np.rot90(seg[kept], axes=(1, 2))
    for i, stored in zip(kept, encode_slices(stack, masks, storage), strict=True):
        yield {
            **stored,
            **{name: values[i] for name, values in derived.items()},
            BRATS_TUMOUR_LABEL: int(tumour_pixels[i] >= config.min_tumour_pixels),
            "tumour_pixels": int(tumour_pixels[i]),
            "brain_fraction": float(brain_fraction[i]),
            "patient_id": case.patient_id,
            "sample_id": f"{case.patient_id}/{i:03d}",
            "source": source,
            "slice_index": i,
        }


def derived_targets(
    seg: np.ndarray, brain: np.ndarray, tumour_pixels: np.ndarray, case: BratsCase, config: BratsConfig
) -> dict[str, list[Any]]:
    """The optional targets ``config.targets`` asks for, one value per slice of ``seg`` ``(S, A, B)``
    (slicing axis first; ``brain`` alike, ``tumour_pixels`` ``(S,)``): ``subregions`` the indices of the
    sub-regions with at least ``min_tumour_pixels`` pixels, ``tumour_area`` ``[tumour / brain pixels]``."""
    out: dict[str, list[Any]] = {}
    if BRATS_SUBREGIONS_TARGET in config.targets:
        regions = config.subregions(case.naming)
        pixels = np.stack([np.isin(seg, labels).sum(axis=(1, 2)) for labels in regions.values()], axis=1)
        present = pixels >= config.min_tumour_pixels
        out[BRATS_SUBREGIONS_TARGET] = [np.flatnonzero(row).tolist() for row in present]
    if BRATS_AREA_TARGET in config.targets:
        brain_pixels = brain.sum(axis=(1, 2))
        area = np.where(brain_pixels > 0, tumour_pixels / np.maximum(brain_pixels, 1), 0.0)
        out[BRATS_AREA_TARGET] = [[float(a)] for a in area]
    return out


def brats_features(config: BratsConfig | None = None) -> Any:
    """The ``datasets.Features`` of a cached BraTS data set (with the optional targets of ``config``).

    ``image`` holds the slice's ``(C, H, W)`` array and ``mask`` its segmentation slice, stored as
    :mod:`mtl_hf.data.slices` describes (quantised, compressed, with CRC-32s checked at every decode;
    :func:`mtl_hf.data.decode_image` decodes them): far cheaper in data-loader workers than Arrow's
    nested lists or PNG.
    """
    from datasets import ClassLabel, Features, List, Value

    targets = config.targets if config is not None else []
    derived: dict[str, Any] = {}
    if config is not None and BRATS_SUBREGIONS_TARGET in targets:
        derived[BRATS_SUBREGIONS_TARGET] = List(ClassLabel(names=list(config.subregions("2020"))))
    if BRATS_AREA_TARGET in targets:
        derived[BRATS_AREA_TARGET] = List(Value("float32"), length=1)
    return Features(
        {
            **slice_features(),
            **derived,
            BRATS_TUMOUR_LABEL: Value("int64"),
            "tumour_pixels": Value("int32"),
            "brain_fraction": Value("float32"),
            "patient_id": Value("string"),
            "sample_id": Value("string"),
            "source": Value("string"),
            "slice_index": Value("int32"),
        }
    )
