"""Read a ``volumes`` source: a manifest of NIfTI volumes or DICOM series of any modality, cut into slices.

Planning (:func:`plan_volume_items`) reads only the manifest: paths (which must resolve under
``data.root`` unless ``allow_outside_root``), patient ids and labels, so label errors are found before
any voxel is read. Rows naming the same volumes (per-slice labels) are grouped into one item.
Reading (:func:`read_volume_item`) loads each channel (NIfTI through
:func:`mtl_hf.data.brats.read_volume`, DICOM series through :mod:`mtl_hf.data.dicom_series`), applies
its intensity (:mod:`mtl_hf.intensity`: MR percentiles, CT windows, PET SUV with
:mod:`mtl_hf.data.pet`), slices along the configured plane of the RAS+ volume exactly as BraTS
volumes are sliced, and stores the slices as :mod:`mtl_hf.data.slices` describes.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..intensity import IntensitySpec, apply_intensity
from .config import AXIS_INDEX, VolumesConfig
from .errors import DataError, DataWarning, SkippedFile, skip
from .kinds import encoder_for
from .readers import listed_file, locate_manifest, read_manifest, read_volume
from .readers.suffixes import NIFTI_SUFFIXES
from .slices import SliceStorage, encode_slices, slice_features
from .targets import TargetEncoder

AIR_HU = -500.0
"""Voxels of a windowed (CT) channel above this many Hounsfield units are foreground (not air)."""


@dataclass
class VolumeItem:
    """One volume set (a file or DICOM series per channel), whose patient it is, and its labels.

    ``slices`` maps slice index -> labels when the manifest labels slices (``slice_column``); ``labels``
    holds per-volume labels otherwise.
    """

    paths: list[str]
    relpath: str
    patient_id: str
    labels: dict[str, Any] = field(default_factory=dict)
    slices: dict[int, dict[str, Any]] | None = None
    mask: str | None = None


@dataclass
class VolumePlan:
    items: list[VolumeItem]
    encoders: dict[str, TargetEncoder]
    skipped: list[SkippedFile]
    inputs: list[str]
    """The manifest, then every file the items read (DICOM series: each slice file)."""


def plan_volume_items(
    config: VolumesConfig,
    root: str | os.PathLike[str],
    skip_bad: bool = False,
    *,
    allow_outside_root: bool = False,
) -> VolumePlan:
    """The items of a ``volumes`` manifest, with encoded labels.

    Raises:
        DataError: the manifest is missing or unreadable, a column is missing, or (unless ``skip_bad``)
            a row has a bad label, an empty patient id or slice index, a missing volume, or a path
            outside ``root``.
    """
    root = Path(root)
    inside = None if allow_outside_root else root.resolve()
    manifest = locate_manifest(config.manifest, root)
    rows, base = read_manifest(manifest), manifest.parent
    source = str(manifest)
    encoders = {name: encoder_for(name, t) for name, t in config.targets.items()}
    wanted = [c.column for c in config.channels] + [
        c for c in (config.patient_column, config.mask_column, config.slice_column) if c is not None
    ]
    for encoder in encoders.values():
        wanted += encoder.columns
        encoder.fit(rows)
    for column in wanted:
        if rows and column not in rows[0]:
            raise DataError(source, f"no column {column!r}; columns: {', '.join(rows[0])}")
    if config.patient_column is None:
        warnings.warn(
            f"{source}: no patient_column; every volume counts as its own patient", DataWarning, stacklevel=2
        )
    items: dict[tuple[str, ...], VolumeItem] = {}
    skipped: list[SkippedFile] = []
    for index, row in enumerate(rows):
        where = f"{source} (row {index + 1})"
        try:
            item = _make_item(row, config, encoders, base, where, inside)
            key = tuple(item.paths)
            if key in items:
                _merge(items[key], item, where)
            else:
                items[key] = item
        except DataError as exc:
            if not skip_bad:
                raise
            skipped.append(skip(exc))
    if not items:
        raise DataError(source, "no usable volumes")
    files = []
    for item in items.values():
        for path in [*item.paths, *([item.mask] if item.mask else [])]:
            files.extend(sorted(str(p) for p in Path(path).iterdir()) if Path(path).is_dir() else [path])
    return VolumePlan(list(items.values()), encoders, skipped, [str(manifest), *files])


def _make_item(
    row: dict[str, Any],
    config: VolumesConfig,
    encoders: dict[str, TargetEncoder],
    base: Path,
    where: str,
    inside: Path | None,
) -> VolumeItem:
    paths = []
    for channel in config.channels:
        cell = str(row.get(channel.column) or "").strip()
        if not cell:
            raise DataError(where, f"column {channel.column!r} is empty")
        paths.append(str(_listed_volume(cell, base, where, inside)))
    relpath = os.path.relpath(paths[0], base)
    patient = relpath
    if config.patient_column is not None:
        patient = str(row.get(config.patient_column) or "").strip()
        if not patient:
            raise DataError(where, f"column {config.patient_column!r} (patient id) is empty")
    labels = {name: enc.encode(row, where) for name, enc in encoders.items()}
    mask = None
    if config.mask_column is not None:
        cell = str(row.get(config.mask_column) or "").strip()
        if cell:
            mask = str(listed_file(cell, base, where, inside, "mask volume"))
    slices = None
    if config.slice_column is not None:
        text = str(row.get(config.slice_column) or "").strip()
        try:
            slice_index = int(text)
        except ValueError:
            raise DataError(
                where, f"column {config.slice_column!r}: expected a slice index, got {text!r}"
            ) from None
        if slice_index < 0:
            raise DataError(where, f"column {config.slice_column!r}: negative slice index {slice_index}")
        slices, labels = {slice_index: labels}, {}
    return VolumeItem(paths, relpath, patient, labels, slices, mask)


def _listed_volume(cell: str, base: Path, where: str, inside: Path | None) -> Path:
    """The NIfTI file or DICOM series folder a manifest cell names, checked as the manifest reader
    checks files (NUL bytes, over-long names, link loops, paths outside the data root)."""
    folder = Path(cell) if Path(cell).is_absolute() else base / cell
    if "\x00" not in cell and folder.is_dir():
        # A series folder: its files are checked as files (each must resolve under the root).
        for entry in sorted(folder.iterdir()):
            listed_file(str(entry), base, where, inside, "DICOM series file")
        if inside is not None and not folder.resolve().is_relative_to(inside):
            raise DataError(str(folder), f"resolves outside the data root {inside} ({where})")
        return folder
    path = listed_file(cell, base, where, inside, "volume")
    if not path.name.lower().endswith(NIFTI_SUFFIXES):
        raise DataError(str(path), f"not a NIfTI file or a DICOM series folder ({where})")
    return path


def _merge(item: VolumeItem, other: VolumeItem, where: str) -> None:
    """Add the slices of a further row of the same volume (per-slice labels)."""
    if item.slices is None or other.slices is None:
        raise DataError(where, f"volume {item.relpath} listed twice (give slice_column for per-slice labels)")
    if item.patient_id != other.patient_id or item.mask != other.mask:
        raise DataError(where, f"volume {item.relpath}: rows disagree on the patient id or the mask")
    for index, labels in other.slices.items():
        if index in item.slices:
            raise DataError(where, f"volume {item.relpath}: slice {index} listed twice")
        item.slices[index] = labels


def read_channel(path: str, spec: IntensitySpec) -> tuple[np.ndarray, IntensitySpec, str | None]:
    """One channel's volume (RAS+, float32), the intensity spec to apply, and a note when a PET
    volume fell back from SUV to min-max."""
    from .pet import suv_factor_from_dicom, suv_factor_from_sidecar

    if not path.lower().endswith(NIFTI_SUFFIXES):  # a DICOM series folder, or one DICOM file
        from .dicom_series import read_dicom_series

        series = read_dicom_series(path)
        volume, factor = series.data, (suv_factor_from_dicom(series.header) if spec.method == "suv" else None)
    else:
        volume = read_volume(path)
        factor = suv_factor_from_sidecar(path) if spec.method == "suv" else None
    if spec.method != "suv":
        return volume, spec, None
    if factor is None:
        return volume, replace(spec, method="minmax"), f"{path}: no SUV in the header; min-max used"
    return volume * np.float32(factor), spec, None


def channel_images(channels: list[tuple[np.ndarray, IntensitySpec]]) -> tuple[np.ndarray, np.ndarray]:
    """``(K, X, Y, Z)`` model channels of same-shaped volumes and their foreground ``(X, Y, Z)``: voxels
    non-zero in any channel (for a windowed CT channel: above :data:`AIR_HU`), over which the
    percentile statistics are taken (the brain, for BraTS)."""
    foreground = np.zeros(channels[0][0].shape, dtype=bool)
    for volume, spec in channels:
        foreground |= volume > AIR_HU if spec.method == "window" else volume != 0
    return np.concatenate([apply_intensity(v, spec, foreground) for v, spec in channels]), foreground


def read_volume_item(
    item: VolumeItem, config: VolumesConfig, root: str, storage: SliceStorage
) -> tuple[list[dict[str, Any]], int, list[str]]:
    """The cached rows of one item, the slices it dropped, and notes (SUV fall-backs)."""
    channels = [read_channel(p, c.intensity) for p, c in zip(item.paths, config.channels, strict=True)]
    shape: tuple[int, ...] = channels[0][0].shape
    for path, (volume, _, _) in zip(item.paths, channels, strict=True):
        if volume.shape != shape:
            raise DataError(path, f"shape {volume.shape} differs from {item.paths[0]}'s {shape}")
    images, foreground = channel_images([(v, spec) for v, spec, _ in channels])
    mask = None
    if item.mask is not None:
        labels = read_volume(item.mask, integer=True)
        if labels.shape != shape:
            raise DataError(item.mask, f"shape {labels.shape} differs from its volume's {shape}")
        if labels.min() < 0 or labels.max() > 255:
            raise DataError(item.mask, "mask labels must be in [0, 255]")
        mask = labels.astype(np.uint8)
    axis = AXIS_INDEX[config.axis]
    images = np.moveaxis(images, axis + 1, 1)  # (C, S, A, B)
    fg = np.moveaxis(foreground, axis, 0)
    count = fg.shape[0]
    if item.slices is not None:
        bad = [i for i in item.slices if i >= count]
        if bad:
            raise DataError(
                item.paths[0], f"slice indices {bad} outside the volume's {count} {config.axis} slices"
            )
        kept = sorted(item.slices)
    else:
        fraction = fg.mean(axis=(1, 2))
        kept = [i for i in range(count) if fraction[i] >= config.min_foreground_fraction]
    if not kept:
        return [], count, []
    stack = np.rot90(np.moveaxis(images[:, kept], 1, 0), axes=(2, 3))
    masks = None if mask is None else np.rot90(np.moveaxis(mask, axis, 0)[kept], axes=(1, 2))
    mask_pixels = None if masks is None else (masks != 0).sum(axis=(1, 2))
    source = ";".join(os.path.relpath(p, root) for p in item.paths)
    rows = []
    for k, (i, stored) in enumerate(zip(kept, encode_slices(stack, masks, storage), strict=True)):
        slice_labels = item.slices[i] if item.slices is not None else item.labels
        row = {**stored, **slice_labels}
        if config.mask_target is not None:
            row[config.mask_target] = int(
                mask_pixels is not None and mask_pixels[k] >= config.min_mask_pixels
            )
        row.update(
            patient_id=item.patient_id, sample_id=f"{item.relpath}/{i:03d}", source=source, slice_index=i
        )
        rows.append(row)
    notes = [note for _, _, note in channels if note]
    return rows, count - len(kept), notes


def volume_features(encoders: dict[str, TargetEncoder], mask_target: str | None) -> Any:
    """The ``datasets.Features`` of a cached ``volumes`` source."""
    from datasets import Features, Value

    derived = {mask_target: Value("int64")} if mask_target is not None else {}
    return Features(
        {
            **slice_features(),
            **{name: enc.feature() for name, enc in encoders.items()},
            **derived,
            "patient_id": Value("string"),
            "sample_id": Value("string"),
            "source": Value("string"),
            "slice_index": Value("int32"),
        }
    )
