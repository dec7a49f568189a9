"""Patients and volumes as inputs of ``predict`` and ``explain``, read the way the model's training data was.

BraTS: exactly the modalities the model was trained on, by name.

A model trained on BraTS records its modalities (``channel_names``, e.g. ``["flair", "t1", "t1ce",
"t2"]``) and how each was normalised (``intensity``) in its image processor. Given such a model,
:func:`plan_sources` turns the inputs into *sources*:

* a folder is searched for BraTS-named NIfTI files (2020/21 ``<id>_flair.nii.gz`` or 2023
  ``<id>-t2f.nii.gz`` naming, see :mod:`mtl_hf.data.brats`); each patient in it becomes one
  :class:`PatientVolumes` holding the files of the trained modalities, in the trained order; other
  modalities in the folder are not read. A patient lacking a trained modality is refused with a
  :class:`~mtl_hf.data.DataError` naming the folder and the modality;
* NIfTI files given one by one are grouped by patient the same way; a file of a modality the model was
  not trained on (``<id>_t1.nii.gz`` for a FLAIR model) is refused, naming it; a file without a BraTS
  suffix is taken as the single modality of a one-modality model (and refused by a model of several);
* anything else (PNG, DICOM) stays a path for :mod:`mtl_hf.inference.readers`.

Volumes (a model trained on a ``volumes`` source of one channel, e.g. CT with Hounsfield windows):
every NIfTI file, DICOM series folder (a folder holding DICOM files) and single DICOM file is a
:class:`PatientVolumes` of that channel, read in real units (HU) by :func:`mtl_hf.data.volumes.read_channel`
and windowed as in training. A model of several volume channels (CT + PET) needs them paired, which a
plain list of files does not say: predict refuses it (build a ``volumes`` manifest and use the cache).

:func:`read_source` then reads a patient with the training data's reader (:func:`mtl_hf.data.brats.read_volume`,
RAS+ orientation, its size and content guards), normalises each modality over the patient's brain
(voxels non-zero in any modality) as the training cache did, and yields slices, each
marked as normalised so the processor does not normalise it again (``(H, W, C)``, channels last
as the readers give colour images). A patient's predictions carry the
path of its first modality's file as ``source`` (its geometry is the patient's: segmentation masks are
written on it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.brats import (
    MODALITY_ALIASES,
    SEGMENTATION_SUFFIX,
    find_brats_cases,
    split_nifti_name,
)
from ..data.config import AXIS_INDEX
from ..data.errors import DataError
from ..data.volumes import channel_images, read_channel
from ..image_processing_mtl import MTLImageProcessor
from ..intensity import IntensitySpec
from .readers import InputImage, find_inputs, kind_of, read_file


@dataclass(frozen=True)
class PatientVolumes:
    """One patient's volumes of the trained modalities: ``files`` ``{modality: path}`` in channel order."""

    patient_id: str
    folder: str
    files: dict[str, str]
    specs: tuple[IntensitySpec, ...] = field(compare=False)

    @property
    def source(self) -> str:
        return next(iter(self.files.values()))


@dataclass(frozen=True)
class NormalisedSlice(InputImage):
    """A slice whose intensities were normalised per volume as in training (``do_intensity=False``)."""


Source = Path | PatientVolumes


def trained_modalities(processor: MTLImageProcessor) -> list[str] | None:
    """The BraTS modalities a model reads (its processor's channel names), ``None`` if it was not
    trained on BraTS modalities."""
    names = processor.channel_names
    if not names or processor.intensity is None or any(n not in MODALITY_ALIASES.values() for n in names):
        return None
    return list(names)


def plan_sources(
    inputs: Sequence[str | os.PathLike[str]], processor: MTLImageProcessor
) -> tuple[list[Source], list[DataError]]:
    """The sources ``predict`` reads, in input order (see module docstring), and an error for each input
    refused: missing or unsupported, a patient lacking a trained modality, a file of a modality the
    model does not read. Refused inputs are named; the others are read."""
    specs = tuple(processor.intensity_specs or ())
    modalities = trained_modalities(processor)
    if modalities is None and (not specs or not processor.channel_names):
        files, listing_errors = find_inputs(inputs)
        return list(files), listing_errors
    sources: list[Source] = []
    errors: list[DataError] = []
    loose: dict[tuple[str, str], dict[str, str]] = {}
    for raw in inputs:
        try:
            if modalities is None:
                sources.extend(_volume_sources(Path(raw), processor.channel_names or [], specs))
            else:
                sources.extend(_brats_sources(Path(raw), modalities, specs, loose))
        except DataError as exc:
            errors.append(exc)
    planned: list[Source] = []
    for source in sources:
        if isinstance(source, PatientVolumes) and (source.folder, source.patient_id) in loose:
            try:  # files given one by one: complete only now
                source = _patient(source.patient_id, source.folder, source.files, modalities or [], specs)
            except DataError as exc:
                errors.append(exc)
                continue
        planned.append(source)
    return planned, errors


def _brats_sources(
    path: Path,
    modalities: list[str],
    specs: tuple[IntensitySpec, ...],
    loose: dict[tuple[str, str], dict[str, str]],
) -> list[Source]:
    """The sources of one input for a model of BraTS modalities (see module docstring)."""
    if path.is_dir():
        try:
            cases = find_brats_cases(path)
        except DataError:  # no BraTS-named volume: an ordinary folder of images
            return _listed(path)
        return [_patient(c.patient_id, c.folder, c.modalities, modalities, specs) for c in cases]
    if not path.is_file() or kind_of(path) != "nifti":
        return _listed(path)
    parsed = split_nifti_name(path.name)
    prefix, suffix = parsed if parsed is not None else (path.name, "")
    if suffix == SEGMENTATION_SUFFIX:
        raise DataError(str(path), "a segmentation, not an image; give the patient's image volumes")
    modality = MODALITY_ALIASES.get(suffix)
    if modality is None:
        if len(modalities) > 1:
            raise DataError(
                str(path),
                f"the model reads {len(modalities)} modalities ({', '.join(modalities)}); give the "
                "patient's folder or its BraTS-named files (<id>_flair.nii.gz, <id>-t2f.nii.gz, ...)",
            )
        return [PatientVolumes(path.name, str(path.parent), {modalities[0]: str(path)}, specs)]
    if modality not in modalities:
        raise DataError(
            str(path), f"a {modality} volume, but the model was trained on {', '.join(modalities)}"
        )
    key = (str(path.parent), prefix)
    known = key in loose
    loose.setdefault(key, {})[modality] = str(path)
    return [] if known else [PatientVolumes(prefix, str(path.parent), loose[key], specs)]


def _listed(path: Path) -> list[Source]:
    """An ordinary input (images, DICOM files) through the readers' listing; its error raised."""
    files, errors = find_inputs([path])
    if errors:
        raise errors[0]
    return list(files)


def _volume_sources(path: Path, names: list[str], specs: tuple[IntensitySpec, ...]) -> list[Source]:
    """The sources of one input for a model of volume channels (see module docstring)."""
    if len(specs) > 1:
        raise DataError(
            str(path),
            f"the model reads {len(specs)} volume channels ({', '.join(names)}); pair them in a volumes manifest",
        )
    if not path.exists():
        return _listed(path)
    sources: list[Source] = []
    for item in [path] if not path.is_dir() or _is_series(path) else _volume_paths(path):
        if item.is_dir() or kind_of(item) in ("nifti", "dicom"):
            sources.append(PatientVolumes(item.name, str(item.parent), {names[0]: str(item)}, specs))
        else:
            sources.extend(_listed(item))
    return sources


def _is_series(folder: Path) -> bool:
    """A folder holding DICOM files (and no sub-folder): one series."""
    entries = list(folder.iterdir())
    return bool(entries) and all(e.is_file() for e in entries) and any(kind_of(e) == "dicom" for e in entries)


def _volume_paths(folder: Path) -> list[Path]:
    """NIfTI files, DICOM series folders and other supported files under ``folder``, sorted."""
    found: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            found.extend([entry] if _is_series(entry) else _volume_paths(entry))
        elif kind_of(entry) is not None:
            found.append(entry)
    return found


def _patient(
    patient_id: str,
    folder: str,
    found: dict[str, str],
    modalities: list[str],
    specs: tuple[IntensitySpec, ...],
) -> PatientVolumes:
    missing = [m for m in modalities if m not in found]
    if missing:
        raise DataError(
            folder,
            f"patient {patient_id}: no {', '.join(missing)} volume; the model was trained on "
            f"{', '.join(modalities)} (found: {', '.join(sorted(found)) or 'none'})",
        )
    return PatientVolumes(patient_id, folder, {m: found[m] for m in modalities}, specs)


def read_source(
    source: Source, *, slice_axis: int = 2, skip_empty: bool = True, **reader_kwargs: Any
) -> Iterator[InputImage]:
    """The images of one source: a file through :func:`mtl_hf.inference.readers.read_file`, a patient
    through :func:`read_patient`."""
    if isinstance(source, PatientVolumes):
        yield from read_patient(source, slice_axis=slice_axis, skip_empty=skip_empty)
    else:
        yield from read_file(source, slice_axis=slice_axis, skip_empty=skip_empty, **reader_kwargs)


def read_patient(
    patient: PatientVolumes, *, slice_axis: int = 2, skip_empty: bool = True
) -> Iterator[NormalisedSlice]:
    """``(H, W, C)`` float32 slices of a patient along ``slice_axis`` (RAS+), normalised as in training."""
    if slice_axis not in AXIS_INDEX.values():
        raise ValueError(f"slice_axis must be 0, 1 or 2, got {slice_axis}")
    paths = list(patient.files.values())
    channels = [read_channel(p, spec)[:2] for p, spec in zip(paths, patient.specs, strict=True)]
    for path, (volume, _) in zip(paths[1:], channels[1:], strict=True):
        if volume.shape != channels[0][0].shape:
            raise DataError(path, f"shape {volume.shape} differs from {paths[0]}'s {channels[0][0].shape}")
    images, brain = channel_images(channels)
    images = np.moveaxis(images, slice_axis + 1, 1)  # (C, S, A, B)
    for i in range(images.shape[1]):
        if skip_empty and not brain.take(i, axis=slice_axis).any():
            continue
        # (H, W, C), as the readers give colour images: anterior up, as in training.
        image = np.ascontiguousarray(np.rot90(images[:, i], axes=(1, 2)).transpose(1, 2, 0))
        yield NormalisedSlice(patient.source, i, image, in_volume=True)


def pixel_values(processor: MTLImageProcessor, items: Sequence[InputImage]) -> torch.Tensor:
    """The processor's ``pixel_values`` of ``items`` in order; slices normalised per volume
    (:class:`NormalisedSlice`) skip its intensity step."""
    done = [isinstance(item, NormalisedSlice) for item in items]
    if all(done) or not any(done):
        images = [item.image for item in items]
        return processor.preprocess(images, do_intensity=not done[0], return_tensors="pt")["pixel_values"]
    parts = [
        processor.preprocess([item.image], do_intensity=not flag, return_tensors="pt")["pixel_values"]
        for item, flag in zip(items, done, strict=True)
    ]
    return torch.cat(parts)
