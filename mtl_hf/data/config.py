"""Typed configuration of a data source: where the files are, how to read, label, split and augment them.

Every class here is a dataclass that :func:`mtl_hf.options.from_dict` builds from YAML/JSON, so a
training config can embed a ``data:`` section and a mistyped key fails with its dotted path::

    from mtl_hf.options import from_dict
    from mtl_hf.data import DataConfig

    config = from_dict(DataConfig, {
        "kind": "brats",
        "root": "demo/brats",
        "brats": {"modalities": ["flair"], "min_tumour_pixels": 10},
        "split": {"train": 0.7, "validation": 0.15, "test": 0.15},
        "sampling": {"undersample": True, "train_fraction": 0.25},
        "seed": 0,
    }, path="data")

Which fields decide the cached Arrow data (and so its fingerprint) and which only act after the cache
(splits, sampling, augmentation, image size) is stated per field; changing the latter never rebuilds.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from ..intensity import IntensitySpec

Axis = Literal["axial", "coronal", "sagittal"]
TargetKind = str
"""The name of a data kind of target (a key of :data:`mtl_hf.data.kinds.DATA_KINDS`: ``binary``,
``multiclass``, ``multilabel``, ``continuous``)."""

AXIS_INDEX: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}
"""Array axis of each anatomical plane once a volume is in RAS+ orientation (``nibabel.as_closest_canonical``)."""

BRATS_TUMOUR_LABEL = "tumour"
"""Name of the slice-level target column of BraTS data sets (1 = tumour present)."""

BRATS_SUBREGIONS_TARGET = "subregions"
"""Name of the optional multi-label BraTS target: which tumour sub-regions a slice shows."""

BRATS_AREA_TARGET = "tumour_area"
"""Name of the optional continuous BraTS target: the slice's tumour area as a fraction of its brain."""

BRATS_TARGETS = (BRATS_TUMOUR_LABEL, BRATS_SUBREGIONS_TARGET, BRATS_AREA_TARGET)
"""The targets a BraTS data set can derive from its segmentations (``brats.targets``)."""

BRATS_SUBREGION_LABELS: dict[str, dict[str, list[int]]] = {
    "2020": {"necrotic_core": [1], "oedema": [2], "enhancing": [4]},
    "2023": {"necrotic_core": [1], "oedema": [2], "enhancing": [3]},
}
"""Segmentation labels of each sub-region by BraTS naming convention: 2020/2021 (``<id>_seg``) mark the
enhancing tumour 4, 2023 (``<id>-seg``) mark it 3; necrotic / non-enhancing core 1 and oedema 2 in both."""

MODALITY_ALIASES: dict[str, str] = {
    "flair": "flair",
    "t2f": "flair",
    "t1": "t1",
    "t1n": "t1",
    "t1ce": "t1ce",
    "t1c": "t1ce",
    "t2": "t2",
    "t2w": "t2",
}
"""File-name suffix (either convention) -> canonical modality name."""


RESERVED_COLUMNS = frozenset({"image", "mask", "patient_id", "sample_id", "source", "slice_index"})
"""Columns of a cached 2-D image set that no target may be named."""


def canonical_modality(name: str) -> str:
    """``"t2f"`` -> ``"flair"`` and so on; raises ``ValueError`` listing the known names."""
    key = name.lower()
    if key not in MODALITY_ALIASES:
        raise ValueError(f"unknown modality {name!r}; known: {', '.join(MODALITY_ALIASES)}")
    return MODALITY_ALIASES[key]


@dataclass
class NormalizationConfig:
    """Per-volume intensity normalisation over brain voxels (cached).

    Attributes:
        method: ``"minmax"`` (default): clip to the percentiles, then scale the brain to [0, 1], which
            is what the image processor's ImageNet/DINO normalisation expects of a float image;
            ``"zscore"``: clip, then subtract the brain mean and divide by its standard deviation
            (background set to 0); ``"none"``: raw intensities as float32.
        percentiles: Lower and upper percentile of the brain voxels to clip to (``[0, 100]`` disables).
    """

    method: Literal["minmax", "zscore", "none"] = "minmax"
    percentiles: tuple[float, float] = (0.5, 99.5)

    def __post_init__(self) -> None:
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"percentiles: need 0 <= low < high <= 100, got {list(self.percentiles)}")


@dataclass
class BratsConfig:
    """How to read a BraTS-layout folder and turn its volumes into labelled 2-D slices (cached).

    Attributes:
        modalities: The modalities stacked as channels, in this order: one (replicated by the image
            processor to the backbone's channels) or several (all four is usual; the model's patch
            embedding is adapted to their number, see :func:`mtl_hf.channels.adapt_input_conv`).
            Names of either BraTS convention: ``flair``/``t2f``, ``t1``/``t1n``, ``t1ce``/``t1c``,
            ``t2``/``t2w``.
        axis: Plane of the 2-D slices: ``"axial"`` (default), ``"coronal"`` or ``"sagittal"``, taken
            from the volume in RAS+ orientation (slices are rotated with ``np.rot90`` so anterior or
            superior is up, as nilearn and :mod:`mtl_hf.inference` show them).
        min_tumour_pixels: A slice is labelled tumour-present when at least this many of its pixels
            carry a tumour label.
        tumour_labels: Segmentation labels that count as tumour; ``None`` (default) means every
            non-zero label (whole tumour: necrosis, oedema, enhancing). For example ``[1, 4]`` (2020/21)
            or ``[1, 3]`` (2023) for the tumour core only.
        segmentation_labels: The declared label set; a segmentation with any other value is bad input.
        min_brain_fraction: Slices whose brain (non-zero voxels in any selected modality) covers less
            than this fraction of the slice are dropped.
        normalization: Per-volume intensity normalisation, see :class:`NormalizationConfig`.
        storage_dtype: How slice intensities are stored (:mod:`mtl_hf.data.slices`): ``"uint8"``
            (default: quantised per slice and channel, scale and offset stored; within 0.2 % of each
            slice's range), ``"uint16"``, ``"float16"`` or ``"float32"`` (exact).
        compression: ``"lz4"`` (default: fastest to decompress), ``"zlib"`` (a few percent smaller) or
            ``"none"``: compression of the stored slices and masks.
        resize: Resize slices to ``data.image_size`` (when set) while building the cache, as the
            transforms would resize them: smaller caches, less work per sample. Off: cached at the
            volumes' own size.
        targets: The slice-level targets derived from the segmentation and cached with the slices
            (``tumour`` is always there; listing it is allowed):

            * ``tumour`` (binary): at least ``min_tumour_pixels`` pixels carry a ``tumour_labels`` label;
            * ``subregions`` (multi-label, labels ``necrotic_core``, ``oedema``, ``enhancing``): each
              present when at least ``min_tumour_pixels`` pixels carry its label (see
              ``subregion_labels``);
            * ``tumour_area`` (continuous, one output): the tumour pixels (``tumour_labels``) as a
              fraction of the slice's brain pixels (non-zero in any selected modality; 0 for a slice
              without brain), counted on the original slice before any resizing.
        subregion_labels: ``{sub-region name: segmentation labels}`` for ``subregions``; ``None``
            (default) uses each patient's naming convention: 2020/2021 (``<id>_seg``) necrotic core 1,
            oedema 2, enhancing 4; 2023 (``<id>-seg``) enhancing 3.
    """

    modalities: list[str] = field(default_factory=lambda: ["flair"])
    axis: Axis = "axial"
    min_tumour_pixels: int = 1
    tumour_labels: list[int] | None = None
    segmentation_labels: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    min_brain_fraction: float = 0.05
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    storage_dtype: Literal["uint8", "uint16", "float16", "float32"] = "uint8"
    compression: Literal["lz4", "zlib", "none"] = "lz4"
    resize: bool = True
    targets: list[str] = field(default_factory=lambda: [BRATS_TUMOUR_LABEL])
    subregion_labels: dict[str, list[int]] | None = None

    def __post_init__(self) -> None:
        if not self.modalities:
            raise ValueError("modalities: give at least one, e.g. [flair] or [t1, t1ce, t2, flair]")
        unknown = [t for t in self.targets if t not in BRATS_TARGETS]
        if unknown:
            raise ValueError(
                f"targets: {unknown[0]!r} is not a BraTS target; targets are {', '.join(BRATS_TARGETS)}"
            )
        if len(set(self.targets)) != len(self.targets):
            raise ValueError(f"targets: duplicates in {self.targets}")
        if self.subregion_labels is not None:
            if not self.subregion_labels:
                raise ValueError("subregion_labels: give at least one sub-region, or omit it")
            for name, labels in self.subregion_labels.items():
                if not labels or any(v == 0 or v not in self.segmentation_labels for v in labels):
                    raise ValueError(
                        f"subregion_labels.{name}: must be non-zero values of segmentation_labels "
                        f"{self.segmentation_labels}, got {labels}"
                    )
        canon = [canonical_modality(m) for m in self.modalities]
        if len(set(canon)) != len(canon):
            raise ValueError(f"modalities: duplicates in {self.modalities}")
        if self.min_tumour_pixels < 1:
            raise ValueError(f"min_tumour_pixels: must be at least 1, got {self.min_tumour_pixels}")
        if 0 not in self.segmentation_labels:
            raise ValueError("segmentation_labels: must contain 0 (background)")
        if any(not 0 <= label <= 255 for label in self.segmentation_labels):
            raise ValueError(f"segmentation_labels: must be in [0, 255], got {self.segmentation_labels}")
        if self.tumour_labels is not None:
            bad = [t for t in self.tumour_labels if t == 0 or t not in self.segmentation_labels]
            if bad or not self.tumour_labels:
                raise ValueError(
                    f"tumour_labels: must be non-zero values of segmentation_labels "
                    f"{self.segmentation_labels}, got {self.tumour_labels}"
                )
        if not 0.0 <= self.min_brain_fraction < 1.0:
            raise ValueError(f"min_brain_fraction: must be in [0, 1), got {self.min_brain_fraction}")

    def subregions(self, naming: str) -> dict[str, list[int]]:
        """``{sub-region: labels}`` of the ``subregions`` target for a case of BraTS ``naming``
        (``"2020"`` for 2020/2021 names, ``"2023"``)."""
        return dict(self.subregion_labels or BRATS_SUBREGION_LABELS[naming])


@dataclass
class TargetConfig:
    """One prediction target of a 2-D image set, stored as a dataset column named after the target.

    Where the values come from: ``columns`` of the manifest, or, when empty, the class sub-folder of
    an ``imagefolder`` layout.

    * ``binary``: one column of 0/1 (also ``true``/``false``, ``yes``/``no``); or one class column with
      ``positive`` or ``negative`` naming the classes (e.g. ``negative: [healthy]`` makes "pathology vs
      healthy"); or several 0/1 columns, positive when any is 1. Stored as ``int64`` 0/1.
    * ``multiclass``: one class column; ``classes`` declares the set and its order (default: the sorted
      values found). Stored as a ``ClassLabel``.
    * ``multilabel``: several 0/1 columns (one per label, named by the columns); or one column of
      names joined by ``;`` (or a JSON list) with ``classes`` declaring them. Stored as the indices
      of the labels present (``List(ClassLabel)``, the Hub's multi-label convention).
    * ``continuous``: one or several numeric columns, one output each (e.g. ``columns: [age]`` or
      ``[volume_ml, thickness_mm]``). Stored as ``List(Value("float32"), length=K)``.

    An empty cell (or NaN, or JSON ``null``) means the sample has no label for this target (a
    partially labelled data set): the data set stores the kind's missing value and the batch carries
    NaN or ``IGNORE_INDEX`` there (:mod:`mtl_hf.data.kinds` has the table), so the sample adds
    nothing to the task's loss and metrics. (In the one-column names form of ``multilabel`` an empty
    cell lists no label; only NaN / ``null`` is missing there.) A value outside the declared set, or a
    non-number in a continuous column, is bad input (:class:`~mtl_hf.data.DataError` naming the
    file, row and column).
    """

    kind: TargetKind = "binary"
    columns: list[str] = field(default_factory=list)
    classes: list[str] | None = None
    positive: list[str] | None = None
    negative: list[str] | None = None

    def __post_init__(self) -> None:
        from .kinds import data_kind

        kind = data_kind(self.kind)
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes: duplicates in {self.classes}")
        kind.check_config(self)


def check_target_names(targets: dict[str, TargetConfig]) -> None:
    """Target names become dataset columns: identifiers, none of :data:`RESERVED_COLUMNS`."""
    for name in targets:
        if not name.isidentifier():
            raise ValueError(f"targets: name {name!r} must be a Python identifier")
    clash = RESERVED_COLUMNS & set(targets)
    if clash:
        raise ValueError(f"targets: {sorted(clash)} are reserved column names")


@dataclass
class ImagesConfig:
    """How to read a 2-D image set: ``imagefolder`` layout or a CSV/JSON manifest (cached).

    Attributes:
        manifest: CSV or JSON (a list of objects, or JSON lines) with one row per image; relative paths
            are resolved against the manifest's folder. ``None``: ``root`` is an ``imagefolder`` layout
            (one sub-folder per class, images anywhere below it).
        path_column, patient_column, mask_column: Manifest column names. ``patient_column`` may be
            ``None`` (each image its own patient); ``mask_column`` names an optional lesion-mask image
            (empty cell: no mask).
        patient_id_pattern: For an imagefolder (or a manifest without patient column): a regular
            expression searched in the file name whose first group (or whole match) is the patient id.
        targets: ``{name: TargetConfig}``, at least one (checked by :class:`DataConfig`). Each becomes a
            dataset column ``name``.
        grayscale: Convert colour images to grey when reading (grey images always stay grey).
    """

    manifest: str | None = None
    path_column: str = "path"
    patient_column: str | None = "patient_id"
    mask_column: str | None = None
    patient_id_pattern: str | None = None
    targets: dict[str, TargetConfig] = field(default_factory=dict)
    grayscale: bool = False

    def __post_init__(self) -> None:
        check_target_names(self.targets)
        for name, target in self.targets.items():
            if self.manifest is None and target.columns:
                raise ValueError(
                    f"targets.{name}.columns: an imagefolder layout has no columns (the class is the folder)"
                )
            if self.manifest is not None and not target.columns:
                raise ValueError(f"targets.{name}.columns: name the manifest column(s) of this target")


@dataclass
class HFDatasetConfig:
    """How to read a 🤗 dataset (``kind: hf_dataset``; ``data.root`` names it): rows of an image column,
    label columns and an optional patient column (cached like the other kinds).

    ``data.root`` is a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``, a
    parquet file or a folder of them, an ``imagefolder`` folder (one sub-folder per class, read by
    ``datasets``' ``imagefolder`` builder, whose class column is ``label``), or a Hub dataset id
    (``owner/name``, read by ``datasets.load_dataset``; downloaded into the 🤗 datasets cache).

    Attributes:
        format: ``"auto"`` (default: a ``save_to_disk`` folder by its ``state.json`` /
            ``dataset_dict.json``, a ``.parquet`` file or a folder holding some, any other folder as an
            imagefolder, and a name that is no local path as a Hub id), ``"disk"``, ``"parquet"``,
            ``"imagefolder"`` or ``"hub"``.
        split: The split to read of a data set with several; ``None`` (default): all of them, together
            (mtl-hf splits by patient itself, see ``data.split``).
        revision: Branch, tag or commit of a Hub dataset.
        image_column: The image column (a ``datasets.Image`` feature, or encoded image bytes).
        patient_column: Patient ids (splits are by patient); ``None``: each row its own patient.
        mask_column: Optional lesion-mask image column (empty cell: no mask).
        targets: ``{name: TargetConfig}``, at least one, each reading the dataset columns named in its
            ``columns``; a ``ClassLabel`` column is read as its class names (and a multiclass target
            without declared ``classes`` takes the ``ClassLabel``'s names, in their order).
        grayscale: Convert colour images to grey when reading.
    """

    format: Literal["auto", "disk", "parquet", "imagefolder", "hub"] = "auto"
    split: str | None = None
    revision: str | None = None
    image_column: str = "image"
    patient_column: str | None = None
    mask_column: str | None = None
    targets: dict[str, TargetConfig] = field(default_factory=dict)
    grayscale: bool = False

    def __post_init__(self) -> None:
        check_target_names(self.targets)
        for name, target in self.targets.items():
            if not target.columns:
                raise ValueError(f"targets.{name}.columns: name the dataset column(s) of this target")


@dataclass
class VolumeChannel:
    """One input channel of a ``volumes`` source: a manifest column naming volumes, and their intensities.

    Attributes:
        column: Manifest column holding, per row, a NIfTI file (``.nii``/``.nii.gz``) or a DICOM series
            folder (one slice per file, ordered by position; install ``mtl-hf[dicom]``).
        name: The channel's name (default: the column), recorded by the image processor.
        intensity: How the volume becomes model channels (:class:`~mtl_hf.intensity.IntensitySpec`):
            ``{method: minmax}`` (MR, the default), ``{method: window, windows: [brain, bone,
            {level: 40, width: 400}]}`` (CT in Hounsfield units, one channel per window; presets:
            ``brain``, ``subdural``, ``stroke``, ``soft_tissue``, ``mediastinum``, ``liver``, ``lung``,
            ``bone``), ``{method: suv, suv_max: 10}`` (PET, see :mod:`mtl_hf.data.pet`).
    """

    column: str = "path"
    name: str | None = None
    intensity: IntensitySpec = field(default_factory=IntensitySpec)

    @property
    def label(self) -> str:
        return self.name or self.column


@dataclass
class VolumesConfig:
    """How to read a ``volumes`` source: a CSV/JSON manifest of volumes of any modality (cached).

    One manifest row per volume (per-volume labels: every slice gets them), or, with ``slice_column``,
    one row per labelled slice (rows of one volume share its paths; only the listed slices are used).

    Attributes:
        manifest: CSV, JSON or JSON-lines file; relative paths resolve against its folder.
        channels: The input channels (default: one MR channel from column ``path``); their volumes must
            have one shape.
        patient_column: Patient ids (splits are by patient); ``None``: each volume its own patient.
        mask_column: Optional label volume (same shape; 0 = background), kept for segmentation heads and
            attention scores; empty cell: no mask.
        slice_column: Optional slice index column for per-slice labels.
        axis: Slicing plane of the RAS+-oriented volumes (as for BraTS).
        targets: ``{name: TargetConfig}`` read from manifest columns (as for 2-D images).
        mask_target: Optional name of a binary target derived from the mask: 1 when a slice has at least
            ``min_mask_pixels`` non-zero mask pixels (needs ``mask_column``).
        min_mask_pixels: See ``mask_target``.
        min_foreground_fraction: Drop slices whose foreground (non-zero voxels of any channel; for a
            windowed CT channel, voxels above -500 HU, i.e. not air) covers less than this fraction.
        storage_dtype, compression, resize: As for BraTS (:class:`BratsConfig`).
    """

    manifest: str = ""
    channels: list[VolumeChannel] = field(default_factory=lambda: [VolumeChannel()])
    patient_column: str | None = "patient_id"
    mask_column: str | None = None
    slice_column: str | None = None
    axis: Axis = "axial"
    targets: dict[str, TargetConfig] = field(default_factory=dict)
    mask_target: str | None = None
    min_mask_pixels: int = 1
    min_foreground_fraction: float = 0.0
    storage_dtype: Literal["uint8", "uint16", "float16", "float32"] = "uint8"
    compression: Literal["lz4", "zlib", "none"] = "lz4"
    resize: bool = True

    def __post_init__(self) -> None:
        if not self.channels:
            raise ValueError("channels: give at least one, e.g. [{column: path}]")
        labels = [c.label for c in self.channels]
        if len(set(labels)) != len(labels):
            raise ValueError(f"channels: names must differ, got {labels}")
        if self.mask_target is not None and self.mask_column is None:
            raise ValueError("mask_target: needs mask_column")
        if self.mask_target is not None and self.mask_target in self.targets:
            raise ValueError(f"mask_target: {self.mask_target!r} is also a manifest target")
        if self.min_mask_pixels < 1:
            raise ValueError(f"min_mask_pixels: must be at least 1, got {self.min_mask_pixels}")
        if not 0.0 <= self.min_foreground_fraction < 1.0:
            raise ValueError(
                f"min_foreground_fraction: must be in [0, 1), got {self.min_foreground_fraction}"
            )


@dataclass
class SplitConfig:
    """Patient-level, stratified, seeded train / validation / test split (after the cache).

    Attributes:
        train, validation, test: Fractions of patients; they must sum to 1. ``validation`` or ``test``
            may be 0.
        stratify_by: Target to stratify on (default: the first target; BraTS: ``tumour``). A patient's
            stratum is its most frequent class (binary: positive when any of its samples is; multilabel:
            any label positive).
        manifest: Path of the split manifest (JSON). Default: ``splits-<target>-seed<seed>-<fractions>.json``
            in the cache folder (``<cache_dir>/splits/<digest of root>/``), never in the data folder.
            When it exists it is reused as is, so every run of a study sees the same patients in each split.
    """

    train: float = 0.7
    validation: float = 0.15
    test: float = 0.15
    stratify_by: str | None = None
    manifest: str | None = None

    def __post_init__(self) -> None:
        values = (self.train, self.validation, self.test)
        if any(v < 0 for v in values) or self.train <= 0:
            raise ValueError(f"fractions must be >= 0 and train > 0, got {list(values)}")
        if not math.isclose(sum(values), 1.0, abs_tol=1e-6):
            raise ValueError(f"train + validation + test must be 1, got {sum(values):.6g}")


@dataclass
class SamplingConfig:
    """What the training split keeps (after the split; validation and test are never touched).

    Attributes:
        train_fraction: Fraction of training *patients* kept, in (0, 1], for low-data experiments. The
            subsets are nested (the 10 % subset contains the 5 % subset for the same seed) and
            stratified.
        undersample: Drop samples of the larger classes at random until every class of the
            stratification target has as many as the smallest (the paper's "under sampled" setting).
    """

    train_fraction: float = 1.0
    undersample: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction: must be in (0, 1], got {self.train_fraction}")


@dataclass
class AugmentationConfig:
    """Train-time augmentation, drawn per sample on the fly (never cached).

    Geometry (applied identically to the lesion mask, nearest neighbour): flips, rotation, scale,
    translation and shear in one affine warp. Intensity (image only): brightness, contrast, gamma and
    Gaussian noise, relative to each image's own range.

    Attributes:
        enabled: Master switch; ``False`` makes the train transform equal to the eval transform.
        horizontal_flip, vertical_flip: Probabilities.
        rotation_degrees: Maximum absolute rotation.
        scale: Zoom range.
        translate: Maximum shift as a fraction of the image size.
        shear_degrees: Maximum absolute shear.
        brightness: Maximum shift, as a fraction of the image's intensity range.
        contrast: Maximum relative change of contrast around the image mean.
        gamma: Range of the gamma exponent applied to the image's range-normalised intensities.
        noise_std: Standard deviation of additive Gaussian noise, as a fraction of the intensity range.
    """

    enabled: bool = True
    horizontal_flip: float = 0.5
    vertical_flip: float = 0.0
    rotation_degrees: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.05
    shear_degrees: float = 5.0
    brightness: float = 0.1
    contrast: float = 0.1
    gamma: tuple[float, float] = (0.8, 1.25)
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        for name in ("horizontal_flip", "vertical_flip"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: probability must be in [0, 1], got {getattr(self, name)}")
        for name in ("rotation_degrees", "translate", "shear_degrees", "brightness", "contrast", "noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale: need 0 < low <= high, got {list(self.scale)}")
        if not 0 < self.gamma[0] <= self.gamma[1]:
            raise ValueError(f"gamma: need 0 < low <= high, got {list(self.gamma)}")


@dataclass
class DataConfig:
    """A data source and everything between its files and a training batch.

    Attributes:
        kind: ``"brats"`` (a BraTS-layout folder of NIfTI volumes), ``"images"`` (2-D images),
            ``"volumes"`` (a manifest of NIfTI volumes or DICOM series of any modality: CT, PET, MR) or
            ``"hf_dataset"`` (a 🤗 dataset of 2-D images: saved to disk, parquet, imagefolder or a Hub id).
        root: The data folder (for ``hf_dataset``: the dataset's folder, file or Hub id).
        brats: Reading options for ``kind: brats`` (defaults if omitted; must be omitted for images).
        images: Reading options for ``kind: images`` (required there: it declares the targets; must be
            omitted for other kinds).
        volumes: Reading options for ``kind: volumes`` (required there; see :class:`VolumesConfig`).
        hf_dataset: Reading options for ``kind: hf_dataset`` (required there: it declares the image and
            label columns; see :class:`HFDatasetConfig`).
        skip_bad: Skip bad files with a warning (counted in the build summary) instead of failing.
        allow_outside_root: For ``kind: images`` (and ``hf_dataset`` cells that hold a file path
            rather than the image's bytes): let the manifest name files outside ``root``
            (``../`` paths, absolute paths, symbolic links leading out). Off by default, so that a
            manifest received with a data copy cannot make the cache read other files of the machine.
        seed: Seeds the split, the training fraction and undersampling.
        split: See :class:`SplitConfig`.
        sampling: See :class:`SamplingConfig`.
        image_size: Side of the square the transforms resize to; ``None`` (default): the image
            processor's size.
        augmentation: See :class:`AugmentationConfig`.
        num_proc: Processes that build the cache (patients / images are shared out between them);
            ``None`` (default): the cores this process may run on. Not part of the cache key: the
            cache is the same whatever the number.
    """

    kind: Literal["brats", "images", "volumes", "hf_dataset"]
    root: str
    brats: BratsConfig = field(default_factory=BratsConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    volumes: VolumesConfig = field(default_factory=VolumesConfig)
    hf_dataset: HFDatasetConfig = field(default_factory=HFDatasetConfig)
    skip_bad: bool = False
    allow_outside_root: bool = False
    seed: int = 0
    split: SplitConfig = field(default_factory=SplitConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    image_size: int | None = None
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    num_proc: int | None = None

    def __post_init__(self) -> None:
        if self.num_proc is not None and self.num_proc < 1:
            raise ValueError(f"num_proc: must be at least 1, got {self.num_proc}")
        if self.kind not in ("brats", "images", "volumes", "hf_dataset"):
            raise ValueError(f"kind: must be 'brats', 'images', 'volumes' or 'hf_dataset', got {self.kind!r}")
        for other, default in (
            ("brats", BratsConfig()),
            ("images", ImagesConfig()),
            ("volumes", VolumesConfig()),
            ("hf_dataset", HFDatasetConfig()),
        ):
            if other != self.kind and getattr(self, other) != default:
                raise ValueError(f"{other}: only for kind {other!r}")
        if self.kind == "images" and not self.images.targets:
            raise ValueError(
                "images.targets: kind 'images' needs at least one target, e.g. {label: {kind: multiclass}}"
            )
        if self.kind == "hf_dataset" and not self.hf_dataset.targets:
            raise ValueError(
                "hf_dataset.targets: kind 'hf_dataset' needs at least one target, e.g. "
                "{label: {kind: multiclass, columns: [label]}}"
            )
        if self.kind == "volumes":
            if not self.volumes.manifest:
                raise ValueError("volumes.manifest: kind 'volumes' needs a manifest (CSV or JSON)")
            if not self.volumes.targets and self.volumes.mask_target is None:
                raise ValueError("volumes.targets: give at least one target (or a mask_target)")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size: must be positive, got {self.image_size}")
        names = self.target_names
        if self.split.stratify_by is not None and self.split.stratify_by not in names:
            raise ValueError(
                f"split.stratify_by: {self.split.stratify_by!r} is not a target; targets: {names}"
            )

    def channel_advice(self, channels: int) -> str:
        """What to change in a configuration whose images have ``channels`` channels that the
        backbone does not take (see :func:`mtl_hf.image_processing_mtl.channel_mismatch`)."""
        backbone = f"set model.backbone_config.num_channels: {channels}"
        if self.kind == "brats":
            named = ", ".join(self.brats.modalities)
            return (
                f"data.brats.modalities stacks {channels} ({named}): {backbone}, or choose other modalities"
            )
        return f"set data.{self.kind}.grayscale: true to read colour images as grey, or {backbone}"

    @property
    def target_names(self) -> list[str]:
        """Names of the label columns this source produces (``["tumour"]`` for BraTS)."""
        if self.kind == "brats":
            return [BRATS_TUMOUR_LABEL]
        if self.kind == "volumes":
            derived = [self.volumes.mask_target] if self.volumes.mask_target is not None else []
            return [*self.volumes.targets, *derived]
        if self.kind == "hf_dataset":
            return list(self.hf_dataset.targets)
        return list(self.images.targets)

    @property
    def build_processes(self) -> int:
        """``num_proc``, or the cores available to this process."""
        if self.num_proc is not None:
            return self.num_proc
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - not Linux
            return max(1, os.cpu_count() or 1)

    @property
    def channel_names(self) -> list[str] | None:
        """Names of the input channels, in order (BraTS: the canonical modalities); ``None`` for
        2-D image sets, whose channels are the images' own (grey or colour)."""
        if self.kind == "brats":
            return [canonical_modality(m) for m in self.brats.modalities]
        if self.kind == "volumes":
            return [c.label for c in self.volumes.channels]
        return None

    def intensity_specs(self) -> list[IntensitySpec] | None:
        """How each input channel's intensities are normalised (per volume), for the image processor."""
        if self.kind == "brats":
            norm = self.brats.normalization
            spec = IntensitySpec(method=norm.method, percentiles=norm.percentiles)
            return [spec for _ in self.brats.modalities]
        if self.kind == "volumes":
            return [c.intensity for c in self.volumes.channels]
        return None

    @property
    def model_channels(self) -> int | None:
        """Channels the model must take when the data has several (BraTS modalities, CT windows);
        ``None`` when a single grey channel or 2-D images leave the backbone's channel count as it is."""
        specs = self.intensity_specs()
        if specs is None:
            return None
        total = sum(spec.num_outputs for spec in specs)
        return total if total > 1 else None

    def processor_kwargs(self) -> dict[str, Any]:
        """What the image processor records of this data: channel names and intensity handling."""
        specs = self.intensity_specs()
        if specs is None:
            return {}
        return {"channel_names": self.channel_names, "intensity": [spec.to_dict() for spec in specs]}

    @property
    def stratify_target(self) -> str:
        """The target that stratifies the split and drives undersampling."""
        return self.split.stratify_by or self.target_names[0]
