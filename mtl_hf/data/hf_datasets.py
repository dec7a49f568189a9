"""Read a 🤗 dataset of 2-D images (``kind: hf_dataset``): saved to disk, parquet, imagefolder or a Hub id.

Planning (:func:`plan_hf_items`) loads the data set (:func:`load_source`) and reads only its label and
patient columns: each row becomes an :class:`HFRowItem` with its encoded targets
(:class:`~mtl_hf.data.targets.TargetEncoder`, as for manifests), so a label error is found before any
pixel is read. Reading (:func:`read_hf_item`) then decodes the row's image with the same guarded picture
reader as image files (:func:`~mtl_hf.data.images.encoded_picture`) and yields the cached row; the
cache, splits, sampling and transforms are those of ``kind: images``.

An image cell holds the encoded bytes (parquet, ``save_to_disk`` of an in-memory set, the Hub) or a
file path (an imagefolder, a set built from paths): such a path must lie under ``data.root`` unless
``data.allow_outside_root``, as for a manifest.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..options import to_dict
from .config import HFDatasetConfig
from .errors import DataError, DataWarning, SkippedFile, skip
from .images import encoded_picture, read_mask
from .kinds import encoder_for
from .readers import listed_file
from .targets import TargetEncoder

if TYPE_CHECKING:
    from datasets import Dataset

DISK_MARKERS = ("state.json", "dataset_dict.json")
"""Files ``save_to_disk`` writes at the top of a ``Dataset`` / ``DatasetDict`` folder."""


@dataclass
class HFRowItem:
    """One row of the data set: its index, patient, encoded labels, and where its pixels may be read.

    Attributes:
        inside: Folder a path-only image cell must resolve under (``None``: anywhere).
    """

    index: int
    patient_id: str
    labels: dict[str, Any] = field(default_factory=dict)
    inside: str | None = None

    @property
    def sample_id(self) -> str:
        return f"row-{self.index}"


@dataclass
class HFPlan:
    """The rows of a 🤗 dataset, the encoders of its targets, rows skipped and the fingerprint's files."""

    items: list[HFRowItem]
    encoders: dict[str, TargetEncoder]
    skipped: list[SkippedFile]
    inputs: list[str]


def source_format(root: str, config: HFDatasetConfig) -> str:
    """``"disk"``, ``"parquet"``, ``"imagefolder"`` or ``"hub"``: ``config.format``, or what ``root`` is.

    Raises:
        DataError: ``root`` looks like a local path (``/``, ``./``, ``../``, ``~``) but does not exist.
    """
    if config.format != "auto":
        return config.format
    path = Path(root).expanduser()
    if path.is_file():
        return "parquet" if path.suffix == ".parquet" else "unknown"
    if path.is_dir():
        if any((path / marker).is_file() for marker in DISK_MARKERS):
            return "disk"
        return "parquet" if parquet_files(path) else "imagefolder"
    if root.startswith(("/", "./", "../", "~")):
        raise DataError(root, "no such file or folder (a Hub dataset id looks like owner/name)")
    return "hub"


def parquet_files(path: Path) -> list[str]:
    """A parquet file, or every ``.parquet`` file below a folder, sorted."""
    if path.is_file():
        return [str(path)]
    return sorted(str(p) for p in path.rglob("*.parquet") if p.is_file())


def load_source(root: str, config: HFDatasetConfig) -> Dataset:
    """The data set ``root`` names, as one ``Dataset`` (``config.split``, or every split together), its
    image and mask columns left encoded (``Image(decode=False)``).

    Raises:
        DataError: naming ``root``: it cannot be loaded (a Hub id offline or unknown, a damaged folder),
            the split does not exist, or the splits have different columns.
    """
    import datasets

    form = source_format(root, config)
    if form == "unknown":
        raise DataError(root, "a file must be .parquet; give a save_to_disk, parquet or imagefolder folder")
    try:
        if form == "disk":
            loaded = datasets.load_from_disk(str(Path(root).expanduser()))
        elif form == "parquet":
            files = parquet_files(Path(root).expanduser())
            if not files:
                raise DataError(root, "no .parquet files found")
            loaded = datasets.load_dataset("parquet", data_files=files)
        elif form == "imagefolder":
            loaded = datasets.load_dataset("imagefolder", data_dir=str(Path(root).expanduser()))
        else:
            loaded = datasets.load_dataset(root, revision=config.revision)
    except DataError:
        raise
    except Exception as exc:  # the loaders raise many kinds (connection, not found, bad files, offline)
        raise DataError(root, f"cannot load it as a {form} dataset ({type(exc).__name__}: {exc})") from exc
    dataset = _one_split(loaded, root, config.split)
    for column in (config.image_column, config.mask_column):
        if column is not None and column in dataset.column_names:
            dataset = dataset.cast_column(column, datasets.Image(decode=False))
    return dataset


def _one_split(loaded: Any, root: str, split: str | None) -> Dataset:
    import datasets

    if isinstance(loaded, datasets.Dataset):
        return loaded
    names = list(loaded)
    if split is not None:
        if split not in loaded:
            raise DataError(root, f"no split {split!r}; splits: {', '.join(names)}")
        return loaded[split]
    if len(names) == 1:
        return loaded[names[0]]
    try:
        return datasets.concatenate_datasets([loaded[name] for name in names])
    except ValueError as exc:
        raise DataError(root, f"its splits {names} differ ({exc}); choose one with hf_dataset.split") from exc


def plan_hf_items(
    config: HFDatasetConfig, root: str, skip_bad: bool = False, *, allow_outside_root: bool = False
) -> HFPlan:
    """List the rows of the data set with their patients and encoded targets.

    Raises:
        DataError: the data set cannot be loaded, a named column is missing, or (unless ``skip_bad``) a
            row has a bad label or an empty patient id.
    """
    dataset = load_source(root, config)
    columns = dataset.column_names
    named = [config.image_column, config.patient_column, config.mask_column]
    named += [c for t in config.targets.values() for c in t.columns]
    for column in named:
        if column is not None and column not in columns:
            raise DataError(root, f"no column {column!r}; columns: {', '.join(columns)}")
    label_columns = sorted({c for t in config.targets.values() for c in t.columns})
    class_names = {c: names for c in label_columns if (names := _class_names(dataset.features[c]))}
    encoders = {name: encoder_for(name, target) for name, target in config.targets.items()}
    for encoder in encoders.values():  # a ClassLabel column's names, in its order, unless declared
        names = class_names.get(encoder.columns[0])
        if names is not None:
            encoder.adopt_classes(names)
    read = [*label_columns, *([config.patient_column] if config.patient_column else [])]
    rows = [_named_classes(row, class_names) for row in dataset.select_columns(read).to_list()]
    for encoder in encoders.values():
        encoder.fit(rows)
    if config.patient_column is None:
        warnings.warn(
            f"{root}: no patient ids (hf_dataset.patient_column); every row counts as its own patient, so "
            "images of one patient may land in different splits",
            DataWarning,
            stacklevel=2,
        )
    local = source_format(root, config) != "hub"
    folder = Path(root).expanduser().resolve()
    folder = folder if folder.is_dir() else folder.parent
    inside = None if allow_outside_root or not local else str(folder)
    items: list[HFRowItem] = []
    skipped: list[SkippedFile] = []
    for index, row in enumerate(rows):
        where = f"{root} (row {index})"
        try:
            patient = f"row-{index}"
            if config.patient_column is not None:
                patient = str(
                    row[config.patient_column] if row[config.patient_column] is not None else ""
                ).strip()
                if not patient:
                    raise DataError(where, f"column {config.patient_column!r} (patient id) is empty")
            labels = {name: enc.encode(row, where) for name, enc in encoders.items()}
            items.append(HFRowItem(index=index, patient_id=patient, labels=labels, inside=inside))
        except DataError as exc:
            if not skip_bad:
                raise
            skipped.append(skip(exc))
    if not items:
        raise DataError(root, "no usable rows")
    return HFPlan(items=items, encoders=encoders, skipped=skipped, inputs=_source_files(root, local, dataset))


def _class_names(feature: Any) -> list[str] | None:
    """The names of a ``ClassLabel`` column, or of a list of them (multi-label)."""
    from datasets import ClassLabel

    inner = getattr(feature, "feature", None)
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    if isinstance(inner, ClassLabel):
        return list(inner.names)
    return None


def _named_classes(row: dict[str, Any], class_names: Mapping[str, list[str]]) -> dict[str, Any]:
    """``ClassLabel`` indices of a row replaced by their names (what targets declare and match); -1, the
    ``datasets`` value of a sample without a label, becomes an empty cell (a missing label)."""
    out = dict(row)
    for column, names in class_names.items():
        value = row.get(column)
        if isinstance(value, list):
            out[column] = [names[v] for v in value]
        elif isinstance(value, int) and 0 <= value < len(names):
            out[column] = names[value]
        elif isinstance(value, int) and value == -1:
            out[column] = None
    return out


def _source_files(root: str, local: bool, dataset: Dataset) -> list[str]:
    """The files whose path, size and time decide the cache: everything under a local source; the
    downloaded Arrow files of a Hub dataset (their path names its revision)."""
    if not local:
        return sorted({f["filename"] for f in dataset.cache_files})
    path = Path(root).expanduser()
    if path.is_file():
        return [str(path)]
    return sorted(str(p) for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


@functools.lru_cache(maxsize=4)
def _opened(root: str, options_json: str) -> Dataset:
    """The data set, loaded once per process (reading workers each open their own)."""
    from ..options import from_dict

    return load_source(root, from_dict(HFDatasetConfig, json.loads(options_json)))


def open_source(root: str, config: HFDatasetConfig) -> Dataset:
    """:func:`load_source`, cached in this process."""
    return _opened(root, json.dumps(to_dict(config), sort_keys=True))


def read_hf_item(item: HFRowItem, config: HFDatasetConfig, root: str) -> list[dict[str, Any]]:
    """The cached row of one data-set row: its image (and mask) checked and encoded as for image files.

    Raises:
        DataError: naming the row: an empty image cell, a path outside ``data.root``, an image that does
            not decode, or a mask whose size differs from the image's.
    """
    row = open_source(root, config)[item.index]
    where = f"{root} (row {item.index})"
    data, path = _cell(row.get(config.image_column), where, item, "image")
    if data is None and path is None:
        raise DataError(where, f"column {config.image_column!r} (image) is empty")
    image, size = encoded_picture(path or where, data, config.grayscale)
    mask = None
    if config.mask_column is not None:
        mask_data, mask_path = _cell(row.get(config.mask_column), where, item, "mask")
        if mask_data is not None or mask_path is not None:
            mask = read_mask(mask_path or where, size, mask_data)
    return [
        {
            "image": {"bytes": image, "path": None},
            "mask": {"bytes": mask, "path": None} if mask is not None else None,
            **item.labels,
            "patient_id": item.patient_id,
            "sample_id": item.sample_id,
            "source": item.sample_id,
            "slice_index": -1,
        }
    ]


def _cell(cell: Any, where: str, item: HFRowItem, what: str) -> tuple[bytes | None, str | None]:
    """An encoded image cell's bytes, or its checked file path."""
    if cell is None:
        return None, None
    if isinstance(cell, (bytes, bytearray)):
        return bytes(cell), None
    if not isinstance(cell, Mapping):
        raise DataError(where, f"the {what} cell is a {type(cell).__name__}, not an image")
    if cell.get("bytes"):
        return bytes(cell["bytes"]), None
    raw = cell.get("path")
    if not raw:
        return None, None
    inside = Path(item.inside) if item.inside is not None else None
    return None, str(listed_file(str(raw), Path(item.inside or "."), where, inside, what))
