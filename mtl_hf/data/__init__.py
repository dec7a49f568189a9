"""Medical image data for multi-task training: files -> cached 🤗 ``datasets`` -> patient-level splits -> batches.

Four kinds of source, described by a :class:`DataConfig` (parseable with :func:`mtl_hf.options.from_dict`,
so a training YAML embeds it as its ``data:`` section):

* ``kind: brats``: a BraTS-layout folder (2020/2021 ``<id>_flair.nii.gz`` or 2023 ``<id>-t2f.nii.gz``
  naming, ``.nii`` or ``.nii.gz``). Volumes are normalised per volume over brain voxels and cut into
  2-D slices along a chosen plane; a slice is labelled ``tumour = 1`` when its segmentation has at
  least ``min_tumour_pixels`` tumour pixels; its mask is kept for segmentation heads and for
  measuring attention inside the lesion.
* ``kind: images``: any 2-D image set (e.g. muscle ultrasound), an ``imagefolder`` layout or a CSV/JSON
  manifest with paths, labels (binary, multi-class or multi-label targets), patient ids and optional
  lesion masks; DICOM files too (with pydicom).
* ``kind: volumes``: a manifest of NIfTI volumes or DICOM series of any modality (CT, PET, MR).
* ``kind: hf_dataset``: a 🤗 dataset of 2-D images (``save_to_disk`` folder, parquet, imagefolder or a
  Hub id) with an image column, label columns and a patient column (:mod:`.hf_datasets`).

Typical use::

    from mtl_hf import MTLImageProcessor
    from mtl_hf.data import DataConfig, MTLDataCollator, apply_transforms, prepare_datasets, worker_init_fn
    from mtl_hf.options import from_dict
    from torch.utils.data import DataLoader

    config = from_dict(DataConfig, {"kind": "brats", "root": "demo/brats", "image_size": 64})
    prepared = prepare_datasets(config, cache_dir="runs/cache")      # Arrow cache + split manifest
    splits = apply_transforms(prepared.datasets, config, MTLImageProcessor(size=64))
    collate = MTLDataCollator({"classification": "tumour"}, features=prepared.datasets["train"].features)
    loader = DataLoader(splits["train"], batch_size=32, shuffle=True, collate_fn=collate,
                        num_workers=1, worker_init_fn=worker_init_fn)

Public API:

Configuration (:mod:`.config`)
    :class:`DataConfig` (``kind``, ``root``, ``brats``, ``images``, ``skip_bad``, ``seed``, ``split``,
    ``sampling``, ``image_size``, ``augmentation``), :class:`BratsConfig`, :class:`NormalizationConfig`,
    :class:`ImagesConfig`, :class:`HFDatasetConfig`, :class:`TargetConfig`, :class:`SplitConfig`,
    :class:`SamplingConfig`,
    :class:`AugmentationConfig`.
Building
    :func:`prepare_datasets` ``(config, cache_dir, *, num_proc=None) -> PreparedData``: cache (streamed
    volume by volume, reused when inputs and reading options are unchanged), patient-level stratified
    split (written to / reused from the split manifest), training fraction and undersampling.
    :func:`load_datasets`: the same, returning only the ``DatasetDict``. :func:`build_cache`: the cached
    data set of all samples and its :class:`BuildSummary`.
Transforms and batches
    :class:`MTLTransform` (for ``set_transform``/``with_transform``), :func:`make_transforms`,
    :func:`apply_transforms`; :class:`MTLDataCollator` (``{task_name: column}`` -> the batch format);
    :func:`worker_init_fn` (one torch thread per data-loader worker); :func:`decode_image`,
    :func:`decode_mask` to look at cached rows.
Statistics
    :func:`label_statistics` ``(datasets, columns=None) -> {split: {column: LabelCounts}}``, with
    :meth:`LabelCounts.pos_weight`; :func:`target_kinds`.
Errors
    :class:`DataError` (a ``ValueError`` naming the bad file), :class:`CacheWriteError` (an ``OSError``
    naming the cache folder: full disk...), :class:`DataWarning`, :class:`SkippedFile`.
Demo data
    :func:`build_demo_data` ``(out_dir, seed=0, ...) -> DemoSummary``: a small BraTS-layout set on the
    real MNI152 brain template and an ultrasound set on real B-mode frames, with synthetic lesions and
    pathology patterns, and a data card (needs ``mtl-hf[demo]``: nilearn, pydicom, pydicom-data).
Lower level
    :func:`normalize_volume`, :func:`find_brats_cases`, :func:`read_volume`, :class:`SplitManifest`,
    :func:`make_split`, :func:`training_fraction`, :func:`undersample`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        ".brats": ("BratsCase", "find_brats_cases"),
        ".build": ("PreparedData", "load_datasets", "prepare_datasets"),
        ".cache": ("BuildSummary", "build_cache"),
        ".collate": ("MASK_COLUMN", "MTLDataCollator", "worker_init_fn"),
        ".config": (
            "AugmentationConfig",
            "BratsConfig",
            "DataConfig",
            "HFDatasetConfig",
            "ImagesConfig",
            "NormalizationConfig",
            "SamplingConfig",
            "SplitConfig",
            "TargetConfig",
        ),
        ".demo": ("DemoSummary", "build_demo_data"),
        ".errors": ("CacheWriteError", "DataError", "DataWarning", "SkippedFile"),
        ".normalization": ("normalize_volume",),
        ".readers": ("read_volume",),
        ".sampling": ("training_fraction", "undersample"),
        ".sources": ("check_source",),
        ".splits": ("SplitManifest", "make_split"),
        ".statistics": ("LabelCounts", "label_statistics", "target_kinds"),
        ".transforms": ("MTLTransform", "apply_transforms", "decode_image", "decode_mask", "make_transforms"),
    },
)

if TYPE_CHECKING:
    from .brats import BratsCase, find_brats_cases
    from .build import PreparedData, load_datasets, prepare_datasets
    from .cache import BuildSummary, build_cache
    from .collate import MASK_COLUMN, MTLDataCollator, worker_init_fn
    from .config import (
        AugmentationConfig,
        BratsConfig,
        DataConfig,
        HFDatasetConfig,
        ImagesConfig,
        NormalizationConfig,
        SamplingConfig,
        SplitConfig,
        TargetConfig,
    )
    from .demo import DemoSummary, build_demo_data
    from .errors import CacheWriteError, DataError, DataWarning, SkippedFile
    from .normalization import normalize_volume
    from .readers import read_volume
    from .sampling import training_fraction, undersample
    from .sources import check_source
    from .splits import SplitManifest, make_split
    from .statistics import LabelCounts, label_statistics, target_kinds
    from .transforms import MTLTransform, apply_transforms, decode_image, decode_mask, make_transforms

__all__ = [
    "MASK_COLUMN",
    "AugmentationConfig",
    "BratsCase",
    "BratsConfig",
    "BuildSummary",
    "CacheWriteError",
    "DataConfig",
    "DataError",
    "DataWarning",
    "DemoSummary",
    "HFDatasetConfig",
    "ImagesConfig",
    "LabelCounts",
    "MTLDataCollator",
    "MTLTransform",
    "NormalizationConfig",
    "PreparedData",
    "SamplingConfig",
    "SkippedFile",
    "SplitConfig",
    "SplitManifest",
    "TargetConfig",
    "apply_transforms",
    "build_cache",
    "build_demo_data",
    "check_source",
    "decode_image",
    "decode_mask",
    "find_brats_cases",
    "label_statistics",
    "load_datasets",
    "make_split",
    "make_transforms",
    "normalize_volume",
    "prepare_datasets",
    "read_volume",
    "target_kinds",
    "training_fraction",
    "undersample",
    "worker_init_fn",
]
