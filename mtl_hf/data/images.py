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

import csv
import io
import json
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
from .targets import CLASS_FOLDER, TargetEncoder

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
DICOM_SUFFIXES = (".dcm", ".dicom")
KEEP_MODES = ("L", "I;16", "RGB")


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
        manifest = Path(config.manifest)
        if not manifest.is_absolute() and not manifest.exists():
            manifest = root / manifest
        rows, base = read_manifest(manifest), manifest.parent
        source = str(manifest)
        inputs = [str(manifest)]
    else:
        if not root.is_dir():
            raise DataError(str(root), "data folder not found")
        rows, base, source, inputs = _imagefolder_rows(root, config.path_column), root, str(root), []
    encoders = {name: TargetEncoder(name, t) for name, t in config.targets.items()}
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
    path = Path(str(raw_path).strip())
    if not path.is_absolute():
        path = base / path
    _check_inside(path, inside, where)
    if not path.is_file():
        raise DataError(str(path), f"image file not found ({where})")
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
            mask_path = Path(str(cell).strip())
            mask = str(mask_path if mask_path.is_absolute() else base / mask_path)
            _check_inside(Path(mask), inside, where)
            if not Path(mask).is_file():
                raise DataError(mask, f"mask file not found ({where})")
    return ImageItem(path=str(path), relpath=relpath, patient_id=patient, labels=labels, mask=mask)


def _check_inside(path: Path, root: Path | None, where: str) -> None:
    """Refuse ``path`` unless it resolves (links followed) under ``root`` (``None``: anything goes)."""
    if root is None:
        return
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise DataError(
            str(path),
            f"resolves to {resolved}, outside the data root {root} ({where}); files outside the root are "
            "refused unless the data config sets allow_outside_root: true",
        )


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV, JSON (a list of objects) or JSON-lines manifest."""
    if not path.is_file():
        raise DataError(str(path), "manifest not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix.lower() == ".csv":
            return [dict(r) for r in csv.DictReader(io.StringIO(text))]
        if path.suffix.lower() in (".json", ".jsonl"):
            stripped = text.strip()
            if stripped.startswith("["):
                rows = json.loads(stripped)
            else:
                rows = [json.loads(line) for line in stripped.splitlines() if line.strip()]
            if not all(isinstance(r, dict) for r in rows):
                raise DataError(str(path), "expected a list of objects (one per image)")
            return rows
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise DataError(str(path), f"cannot parse manifest ({exc})") from exc
    raise DataError(str(path), "manifest must be .csv, .json or .jsonl")


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
    if path.lower().endswith(DICOM_SUFFIXES):
        return True
    if path.lower().endswith(IMAGE_SUFFIXES):
        return False
    with open(path, "rb") as f:
        f.seek(128)
        return f.read(4) == b"DICM"


def encode_png(array: np.ndarray) -> bytes:
    """Lossless PNG of a ``uint8`` grey/RGB or ``uint16`` grey array."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def read_image_frames(path: str, grayscale: bool = False) -> list[tuple[int, bytes, tuple[int, int]]]:
    """``[(frame index, encoded image, (height, width))]``: one entry (index -1), or one per frame of a
    multi-frame DICOM.

    Raises:
        DataError: the file cannot be decoded (truncated, not an image, pydicom missing for DICOM).
    """
    if is_dicom(path):
        frames = read_dicom_frames(path, grayscale)
        indices = range(len(frames)) if len(frames) > 1 else [-1]
        return [(i, encode_png(a), (a.shape[0], a.shape[1])) for i, a in zip(indices, frames, strict=True)]
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in KEEP_MODES and not (grayscale and mode == "RGB"):
                with open(path, "rb") as f:
                    data = f.read()
                return [(-1, data, (image.height, image.width))]
            array = _pil_to_array(image, grayscale)
    except Exception as exc:  # Pillow raises many kinds for damaged files (and DecompressionBombError)
        raise DataError(path, f"cannot decode image ({type(exc).__name__}: {exc})") from exc
    return [(-1, encode_png(array), array.shape[:2])]


def _pil_to_array(image: Any, grayscale: bool) -> np.ndarray:
    mode = image.mode
    if mode in ("I", "F", "I;16B", "I;16L"):
        array = np.asarray(image, dtype=np.float64)
        return _to_uint16(array)
    if mode in ("1", "L", "LA", "I;16"):
        return np.asarray(image.convert("L") if mode != "I;16" else image)
    rgb = image.convert("RGB")
    return np.asarray(rgb.convert("L") if grayscale else rgb)


def _to_uint16(array: np.ndarray) -> np.ndarray:
    array = array.astype(np.float64)
    lo, hi = float(array.min()), float(array.max())
    scaled = (array - lo) / (hi - lo) if hi > lo else np.zeros_like(array)
    return np.round(scaled * 65535).astype(np.uint16)


def read_dicom_frames(path: str, grayscale: bool = False) -> list[np.ndarray]:
    """Frames of a DICOM file as ``uint8`` (grey or RGB) or ``uint16`` (grey) arrays.

    Palette colour is applied; ``MONOCHROME1`` is inverted (bright = high signal); grey data that is not
    8-bit is min-max scaled to 16 bits over all frames; RGB data above 8 bits is scaled to 8 bits.
    """
    try:
        import pydicom
    except ImportError as exc:
        raise DataError(path, "reading DICOM needs pydicom: pip install 'mtl-hf[dicom]'") from exc
    try:
        from pydicom.pixels import apply_color_lut  # pydicom >= 3
    except ImportError:  # pragma: no cover - pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_color_lut  # type: ignore[no-redef]
    try:
        ds = pydicom.dcmread(path)
        array = ds.pixel_array
        photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
        if photometric == "PALETTE COLOR":
            array = apply_color_lut(array, ds)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    except Exception as exc:  # pydicom raises many kinds for corrupt files
        raise DataError(path, f"cannot decode DICOM ({type(exc).__name__}: {exc})") from exc
    colour = array.ndim == (4 if frames > 1 else 3) and array.shape[-1] == 3
    if frames == 1:
        array = array[None]
    if colour:
        if array.dtype != np.uint8:
            array = (array.astype(np.float64) / max(float(array.max()), 1.0) * 255).round().astype(np.uint8)
        if grayscale:
            weights = np.array([0.299, 0.587, 0.114])
            array = (array @ weights).round().clip(0, 255).astype(np.uint8)
    else:
        if photometric == "MONOCHROME1":
            array = array.max() - array
        if array.dtype != np.uint8:
            array = _to_uint16(array)
    return [np.ascontiguousarray(a) for a in array]


def read_mask(path: str, size: tuple[int, int]) -> bytes:
    """A lesion mask image as PNG bytes (``L``: 0 = background); its size must equal the image's."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            array = np.asarray(image.convert("L"))
    except Exception as exc:  # Pillow raises many kinds for damaged files (and DecompressionBombError)
        raise DataError(path, f"cannot decode mask ({type(exc).__name__}: {exc})") from exc
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
