"""Read a 2-D image set (ultrasound or any other): an ``imagefolder`` layout or a CSV/JSON manifest.

Planning (:func:`plan_image_items`) reads only the manifest or the folder tree: it resolves paths,
patient ids and target values, so label errors are found before any pixel is read. Reading
(:func:`iter_item_rows`) then opens each image, checks it decodes, and produces the cached rows.

Images are stored in the Arrow cache as encoded files (``datasets.Image``): the original bytes when
Pillow reads the file as grey (``L``, ``I;16``) or colour (``RGB``), otherwise a lossless PNG of the
converted pixels. Grey stays grey: channels are only expanded by the image processor, for the
backbone. DICOM files (``.dcm``/``.dicom``, or a DICOM preamble) are read with pydicom (install
``mtl-hf[dicom]``): palette colour is applied, ``MONOCHROME1`` inverted, non-8-bit grey scaled to 16 bits;
a multi-frame file (a cine loop) gives one sample per frame.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import ImagesConfig
from .errors import DataError, DataWarning, SkippedFile, skip
from .kinds import encoder_for
from .readers import (
    KEEP_MODES,
    decoding,
    listed_file,
    locate_manifest,
    open_picture,
    picture_array,
    picture_file_bytes,
    read_dicom,
    read_manifest,
)
from .readers import is_dicom as _is_dicom
from .readers.suffixes import DICOM_SUFFIXES, IMAGE_SUFFIXES
from .targets import CLASS_FOLDER, TargetEncoder


@dataclass
class ImageItem:
    """One manifest row (or imagefolder file): where the image is, whose it is, and its labels."""

    path: str
    relpath: str
    patient_id: str
    labels: dict[str, Any] = field(default_factory=dict)
    mask: str | None = None


@dataclass
class ImagePlan:
    """The items of a 2-D image set, the encoders of its targets and the rows skipped while planning."""

    items: list[ImageItem]
    encoders: dict[str, TargetEncoder]
    skipped: list[SkippedFile]
    inputs: list[str]
    """Files whose content decides the cache (the manifest), besides the images themselves."""


def plan_image_items(
    config: ImagesConfig,
    root: str | os.PathLike[str],
    skip_bad: bool = False,
    *,
    allow_outside_root: bool = False,
) -> ImagePlan:
    """List the items of an image set and encode their targets.

    Every image and mask must resolve (symbolic links followed) to a file under ``root``, so a
    manifest cannot make the cache (and what is later shared from it) read ``../../etc/passwd``, an
    absolute path elsewhere, or a link out of the data folder; ``allow_outside_root=True`` lifts this.

    Raises:
        DataError: ``root`` or the manifest is missing or unreadable, a column is missing, or (unless
            ``skip_bad``) a row has a bad label, an empty patient id, a missing image file or a path
            outside ``root``.
    """
    root = Path(root)
    inside = None if allow_outside_root else root.resolve()
    if config.manifest is not None:
        manifest = locate_manifest(config.manifest, root)
        rows, base = read_manifest(manifest), manifest.parent
        source = str(manifest)
        inputs = [str(manifest)]
    else:
        if not root.is_dir():
            raise DataError(str(root), "data folder not found")
        rows, base, source, inputs = _imagefolder_rows(root, config.path_column), root, str(root), []
    encoders = {name: encoder_for(name, t) for name, t in config.targets.items()}
    for encoder in encoders.values():
        for column in encoder.columns:
            if column != CLASS_FOLDER and rows and column not in rows[0]:
                raise DataError(source, f"no column {column!r}; columns: {', '.join(rows[0])}")
        encoder.fit(rows)
    for name in (config.path_column, config.patient_column, config.mask_column):
        if config.manifest is not None and name is not None and rows and name not in rows[0]:
            raise DataError(source, f"no column {name!r}; columns: {', '.join(rows[0])}")
    pattern = re.compile(config.patient_id_pattern) if config.patient_id_pattern else None
    has_patients = pattern is not None or (config.manifest is not None and config.patient_column is not None)
    if not has_patients:
        warnings.warn(
            f"{source}: no patient ids (patient_column / patient_id_pattern); every image counts as its "
            "own patient, so images of one patient may land in different splits",
            DataWarning,
            stacklevel=2,
        )
    items: list[ImageItem] = []
    skipped: list[SkippedFile] = []
    seen: set[str] = set()
    for index, row in enumerate(rows):
        where = f"{source} (row {index + 1})" if config.manifest is not None else str(row[config.path_column])
        try:
            item = _make_item(row, config, encoders, pattern, base, where, inside)
            if item.relpath in seen:
                raise DataError(where, f"image {item.relpath} listed twice")
            seen.add(item.relpath)
            items.append(item)
        except DataError as exc:
            if not skip_bad:
                raise
            skipped.append(skip(exc))
    if not items:
        raise DataError(source, "no usable images")
    return ImagePlan(items=items, encoders=encoders, skipped=skipped, inputs=inputs)


def _make_item(
    row: Mapping[str, Any],
    config: ImagesConfig,
    encoders: Mapping[str, TargetEncoder],
    pattern: re.Pattern[str] | None,
    base: Path,
    where: str,
    inside: Path | None = None,
) -> ImageItem:
    raw_path = row.get(config.path_column)
    if raw_path is None or str(raw_path).strip() == "":
        raise DataError(where, f"column {config.path_column!r} is empty")
    path = listed_file(str(raw_path).strip(), base, where, inside)
    relpath = os.path.relpath(path, base)
    patient = ""
    if config.patient_column is not None and config.manifest is not None:
        patient = str(row.get(config.patient_column) or "").strip()
        if not patient:
            raise DataError(where, f"column {config.patient_column!r} (patient id) is empty")
    elif pattern is not None:
        match = pattern.search(path.name)
        if match is None:
            raise DataError(str(path), f"patient_id_pattern {pattern.pattern!r} does not match the file name")
        patient = match.group(1) if match.groups() else match.group(0)
    else:
        patient = relpath
    labels = {name: enc.encode(row, where) for name, enc in encoders.items()}
    mask = None
    if config.mask_column is not None:
        cell = row.get(config.mask_column)
        if cell is not None and str(cell).strip():
            mask = str(listed_file(str(cell).strip(), base, where, inside, "mask"))
    return ImageItem(path=str(path), relpath=relpath, patient_id=patient, labels=labels, mask=mask)


def _imagefolder_rows(root: Path, path_column: str) -> list[dict[str, Any]]:
    rows = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames.sort()
            for name in sorted(filenames):
                if name.lower().endswith(IMAGE_SUFFIXES + DICOM_SUFFIXES):
                    rows.append({path_column: os.path.join(dirpath, name), CLASS_FOLDER: class_dir.name})
    if not rows:
        raise DataError(str(root), "no images found in class sub-folders (imagefolder layout)")
    return rows


# -- reading pixels -------------------------------------------------------------------------------
def is_dicom(path: str) -> bool:
    """By suffix, or by the ``DICM`` marker after the 128-byte preamble."""
    return _is_dicom(path, IMAGE_SUFFIXES)


def encode_png(array: np.ndarray) -> bytes:
    """Lossless PNG of a ``uint8`` grey/RGB or ``uint16`` grey array."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def read_image_frames(path: str, grayscale: bool = False) -> list[tuple[int, bytes, tuple[int, int]]]:
    """``[(frame index, encoded image, (height, width))]``: one entry (index -1), or one per frame of a
    multi-frame DICOM. Files are read by :mod:`mtl_hf.data.readers` (its size limits apply).

    Raises:
        DataError: the file cannot be decoded (truncated, not an image, too large, pydicom missing for
            DICOM).
    """
    if is_dicom(path):
        frames = read_dicom(path, grayscale)
        indices = range(len(frames)) if len(frames) > 1 else [-1]
        with decoding(path, "DICOM"):
            return [
                (i, encode_png(a), (a.shape[0], a.shape[1])) for i, a in zip(indices, frames, strict=True)
            ]
    return [(-1, *encoded_picture(path, grayscale=grayscale))]


def encoded_picture(
    where: str, data: bytes | None = None, grayscale: bool = False
) -> tuple[bytes, tuple[int, int]]:
    """What to cache of the picture file ``where`` (or of the encoded ``data``, which ``where`` then only
    names in errors): its own bytes when Pillow reads it as grey or RGB, else a lossless PNG of the
    converted pixels; and its ``(height, width)``.

    Raises:
        DataError: no picture, damaged, or too large (:func:`~mtl_hf.data.readers.open_picture`,
            :func:`~mtl_hf.data.readers.picture_file_bytes`).
    """
    if data is None:
        data = picture_file_bytes(where)
    with open_picture(where, data=data) as image:
        if image.mode in KEEP_MODES and not (grayscale and image.mode == "RGB"):
            return data, (image.height, image.width)
        array = picture_array(image, grayscale)
    with decoding(where, "image"):
        return encode_png(array), (array.shape[0], array.shape[1])


def read_mask(path: str, size: tuple[int, int], data: bytes | None = None) -> bytes:
    """A lesion mask image (the file ``path``, or the encoded ``data`` that ``path`` names in errors) as
    PNG bytes (``L``: 0 = background); its size must equal the image's."""
    with open_picture(path, "mask", data=data) as image:
        array = np.asarray(image.convert("L"))
    if array.shape != tuple(size):
        raise DataError(path, f"mask size {array.shape} differs from its image's {tuple(size)}")
    return encode_png(array)


def iter_item_rows(item: ImageItem, grayscale: bool) -> Iterator[dict[str, Any]]:
    """Cached rows of one item (one per frame); reads and checks everything before the first row."""
    frames = read_image_frames(item.path, grayscale)
    mask = None
    if item.mask is not None:
        sizes = {f[2] for f in frames}
        mask = read_mask(item.mask, next(iter(sizes)))
    rows = []
    for index, data, _size in frames:
        sample_id = item.relpath if index < 0 else f"{item.relpath}#{index}"
        rows.append(
            {
                "image": {"bytes": data, "path": None},
                "mask": {"bytes": mask, "path": None} if mask is not None else None,
                **item.labels,
                "patient_id": item.patient_id,
                "sample_id": sample_id,
                "source": item.relpath,
                "slice_index": index,
            }
        )
    yield from rows


def image_features(encoders: Mapping[str, TargetEncoder]) -> Any:
    """The ``datasets.Features`` of a cached 2-D image set (one column per target)."""
    from datasets import Features, Image, Value

    return Features(
        {
            "image": Image(),
            "mask": Image(),
            **{name: enc.feature() for name, enc in encoders.items()},
            "patient_id": Value("string"),
            "sample_id": Value("string"),
            "source": Value("string"),
            "slice_index": Value("int32"),
        }
    )
