"""Build the Arrow cache of a data source, streamed file by file, and reuse it when nothing changed.

The cache is a ``datasets.Dataset`` written by ``Dataset.from_generator`` with an explicit fingerprint:
a hash of the reading options (not the split, sampling or augmentation, which act after the cache), of
the data-format version and of every input file's path, size and modification time (and the
manifest's content). So:

* memory is bounded by one volume or image: the generator reads one file set at a time and
  ``datasets`` flushes rows to disk in small batches;
* a second build with the same inputs is a cache hit (``datasets`` finds the prepared data under the
  fingerprint and does not call the generator; :attr:`BuildSummary.cache_hit` says so);
* a build that fails or is interrupted leaves no cache a later run could mistake for complete:
  ``datasets`` writes into ``<dir>.incomplete`` and renames it only when the generator has finished.

Bad files raise :class:`~mtl_hf.data.DataError`, or with ``skip_bad`` are skipped, warned about and
listed in the summary, which is kept beside the cache so a cache hit reports the same skips.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..options import to_dict
from .brats import BratsCase, SliceCounts, brats_features, find_brats_cases, iter_case_slices, load_case
from .config import BratsConfig, DataConfig, HFDatasetConfig, ImagesConfig, VolumesConfig
from .errors import CacheWriteError, DataError, SkippedFile, skip
from .hf_datasets import HFRowItem, plan_hf_items, read_hf_item
from .images import ImageItem, image_features, iter_item_rows, plan_image_items
from .parallel import read_in_order
from .slices import SliceStorage
from .volumes import VolumeItem, plan_volume_items, read_volume_item, volume_features

if TYPE_CHECKING:
    from datasets import Dataset

CACHE_FORMAT_VERSION = 3
"""Bumped whenever the cached rows change meaning; part of every fingerprint."""

SUMMARY_DIR = "mtl_hf_builds"


@dataclass
class BuildSummary:
    """What a cache build read, kept and skipped.

    Attributes:
        kind: ``data.kind`` (``"brats"``, ``"images"``, ``"volumes"``, ``"hf_dataset"``).
        fingerprint: The cache key (see module docstring).
        cache_hit: ``True`` when this call reused an existing cache and read no input file.
        num_samples: Rows (slices or images) in the cache.
        num_patients: Distinct patient ids in the cache.
        files_read: Patients (BraTS) or image files read by the build that made the cache.
        slices_dropped: BraTS slices dropped for too little brain.
        skipped: Files skipped as bad (``skip_bad=True``), with the reason.
        cache_files: The Arrow files of the cache.
    """

    kind: str
    fingerprint: str
    cache_hit: bool
    num_samples: int
    num_patients: int
    files_read: int
    slices_dropped: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    cache_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_cache(
    config: DataConfig, cache_dir: str | os.PathLike[str], *, num_proc: int | None = None
) -> tuple[Dataset, BuildSummary]:
    """The cached ``datasets.Dataset`` of all samples of ``config``'s source, and its build summary.

    Args:
        config: The data source.
        cache_dir: Folder of the Arrow cache (created if needed).
        num_proc: Build with this many processes (inputs are sharded by patient / image); default
            ``config.num_proc``, else the cores available. Never more than there are inputs.

    Raises:
        DataError: a bad input file (unless ``config.skip_bad``), or no usable sample at all.
    """
    from datasets import Dataset
    from datasets.exceptions import DatasetGenerationError

    cache_dir = Path(cache_dir)
    items, features, planning_skips, inputs, options = _plan(config)
    fingerprint = compute_fingerprint(config, inputs)
    processes = max(1, min(num_proc or config.build_processes, len(items)))
    summary_dir = cache_dir / SUMMARY_DIR / fingerprint
    run_dir = summary_dir / f"run-{uuid.uuid4().hex}"
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        try:
            dataset = Dataset.from_generator(
                generate_rows,
                features=features,
                cache_dir=str(cache_dir),
                gen_kwargs={
                    # A tuple, not a list: ``from_generator`` calls the generator once per element of a
                    # list argument, which would hand each call one item and leave no work to share.
                    "items": tuple(items),
                    "options": options,
                    "root": str(Path(config.root)),
                    "skip_bad": config.skip_bad,
                    "report_dir": str(run_dir),
                    "storage": slice_storage(config),
                    "processes": processes,
                },
                fingerprint=fingerprint,
                writer_batch_size=32 if config.kind == "brats" else 256,
            )
        except DatasetGenerationError as exc:
            cause: BaseException | None = exc
            while cause is not None:
                if isinstance(cause, DataError):
                    raise cause from None
                if isinstance(cause, OSError):
                    raise _cache_write_error(cache_dir, cause) from exc
                cause = cause.__cause__ or cause.__context__
            raise
        except OSError as exc:
            raise _cache_write_error(cache_dir, exc) from exc
        reports = sorted(run_dir.glob("*.json"))
        summary_path = summary_dir / "summary.json"
        if reports:
            merged = _merge_reports(reports)
            summary = BuildSummary(
                kind=config.kind,
                fingerprint=fingerprint,
                cache_hit=False,
                num_samples=len(dataset),
                num_patients=merged["patients"] if config.kind == "brats" else _patients(items),
                files_read=merged["files_read"],
                slices_dropped=merged["slices_dropped"],
                skipped=planning_skips + [SkippedFile(**s) for s in merged["skipped"]],
            )
            _write_json_atomic(summary_path, summary.to_dict())
        elif summary_path.is_file():
            stored = json.loads(summary_path.read_text())
            stored["skipped"] = [SkippedFile(**s) for s in stored["skipped"]]
            summary = BuildSummary(**{**stored, "cache_hit": True})
        else:  # the cache was completed by a build that died before writing its summary
            summary = BuildSummary(
                kind=config.kind,
                fingerprint=fingerprint,
                cache_hit=True,
                num_samples=len(dataset),
                num_patients=_patients(items) if config.kind != "brats" else len(items),
                files_read=0,
                skipped=planning_skips,
            )
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    summary.cache_files = [f["filename"] for f in dataset.cache_files]
    if len(dataset) == 0:
        raise DataError(str(config.root), f"no usable samples ({len(summary.skipped)} files skipped)")
    return dataset, summary


def slice_storage(config: DataConfig) -> SliceStorage | None:
    """How a volume source's slices are stored (:mod:`mtl_hf.data.slices`); ``None`` for 2-D images."""
    if config.kind in ("images", "hf_dataset"):
        return None
    options = config.brats if config.kind == "brats" else config.volumes
    size = config.image_size if options.resize else None
    return SliceStorage(options.storage_dtype, options.compression, size)


def _patients(items: Sequence[Any]) -> int:
    return len({item.patient_id for item in items})


def _cache_write_error(cache_dir: Path, cause: OSError) -> CacheWriteError:
    reason = cause.strerror or str(cause)
    if cause.filename:
        reason += f", file {cause.filename}"
    try:
        free = f"{shutil.disk_usage(cache_dir).free / 2**20:,.1f} MiB are free there"
    except OSError:
        free = "the free space there is unknown"
    return CacheWriteError(
        str(cache_dir),
        f"writing the data cache failed ({reason}); {free}. No partial cache was left and earlier caches "
        "are untouched. Free space, or point cache_dir (MTL_HF_CACHE) at another disk, and run again.",
        cause.errno,
    )


def _plan(config: DataConfig) -> tuple[list[Any], Any, list[SkippedFile], list[str], Any]:
    """Items to read, features, skips found while planning, fingerprint inputs and reader options."""
    if config.kind == "brats":
        cases = find_brats_cases(config.root)
        inputs = sorted(
            p for c in cases for p in [*c.modalities.values(), *([c.segmentation] if c.segmentation else [])]
        )
        return cases, brats_features(config.brats), [], inputs, config.brats
    if config.kind == "volumes":
        volumes = plan_volume_items(
            config.volumes,
            config.root,
            skip_bad=config.skip_bad,
            allow_outside_root=config.allow_outside_root,
        )
        features = volume_features(volumes.encoders, config.volumes.mask_target)
        return volumes.items, features, volumes.skipped, volumes.inputs, config.volumes
    if config.kind == "hf_dataset":
        rows = plan_hf_items(
            config.hf_dataset,
            config.root,
            skip_bad=config.skip_bad,
            allow_outside_root=config.allow_outside_root,
        )
        return rows.items, image_features(rows.encoders), rows.skipped, rows.inputs, config.hf_dataset
    plan = plan_image_items(
        config.images, config.root, skip_bad=config.skip_bad, allow_outside_root=config.allow_outside_root
    )
    inputs = sorted({p for i in plan.items for p in (i.path, i.mask) if p is not None})
    return plan.items, image_features(plan.encoders), plan.skipped, plan.inputs + inputs, config.images


def compute_fingerprint(config: DataConfig, inputs: Sequence[str]) -> str:
    """Hash of everything the cached rows depend on (see module docstring)."""
    options = {
        "brats": config.brats,
        "images": config.images,
        "volumes": config.volumes,
        "hf_dataset": config.hf_dataset,
    }[config.kind]
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {
                "version": CACHE_FORMAT_VERSION,
                "kind": config.kind,
                "options": to_dict(options),
                "storage": dataclasses.asdict(storage) if (storage := slice_storage(config)) else None,
                "skip_bad": config.skip_bad,
            },
            sort_keys=True,
        ).encode()
    )
    root = Path(config.root)
    for path in inputs:
        stat = os.stat(path)
        try:
            name = os.path.relpath(path, root)
        except ValueError:  # another drive (Windows)
            name = path
        h.update(f"\n{name}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    if (config.kind == "images" and config.images.manifest is not None) or config.kind == "volumes":
        for path in inputs[:1]:  # the manifest: its content, not only its time stamp
            h.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return h.hexdigest()[:24]


def generate_rows(
    items: Sequence[Any],
    options: BratsConfig | ImagesConfig | VolumesConfig | HFDatasetConfig,
    root: str,
    skip_bad: bool,
    report_dir: str,
    storage: SliceStorage | None = None,
    processes: int = 1,
) -> Iterator[dict[str, Any]]:
    """The ``Dataset.from_generator`` generator: rows of ``items``, one input file set at a time.

    Items are read by ``processes`` workers (:mod:`mtl_hf.data.parallel`), in order. Each item is read
    and checked completely before its first row is yielded, so a bad file never leaves part of its
    rows behind. At the end a report (files read, patients, slices dropped, files skipped) is written
    to ``report_dir``.
    """
    files_read = 0
    patients = 0
    dropped = 0
    skipped: list[SkippedFile] = []
    read = functools.partial(read_item, options, root, storage)
    for result in read_in_order(read, items, processes):
        if isinstance(result, DataError):
            if not skip_bad:
                raise result
            skipped.append(skip(result))
            continue
        rows, item_dropped = result
        files_read += 1
        patients += 1  # BraTS items are patients; other kinds count their patients from the plan
        dropped += item_dropped
        yield from rows
    report = {
        "files_read": files_read,
        "patients": patients,
        "slices_dropped": dropped,
        "skipped": [dataclasses.asdict(s) for s in skipped],
    }
    _write_json_atomic(Path(report_dir) / f"{uuid.uuid4().hex}.json", report)


def read_item(
    options: BratsConfig | ImagesConfig | VolumesConfig | HFDatasetConfig,
    root: str,
    storage: SliceStorage | None,
    item: Any,
) -> tuple[list[dict[str, Any]], int]:
    """The cached rows of one item (a BraTS patient, an image) and the slices it dropped."""
    if isinstance(item, BratsCase):
        assert isinstance(options, BratsConfig)
        counts = SliceCounts()
        volumes = load_case(item, options)
        return list(iter_case_slices(volumes, item, options, root, counts, storage)), counts.dropped
    if isinstance(item, VolumeItem):
        assert isinstance(options, VolumesConfig) and storage is not None
        rows, dropped, _notes = read_volume_item(item, options, root, storage)
        return rows, dropped
    if isinstance(item, HFRowItem):
        assert isinstance(options, HFDatasetConfig)
        return read_hf_item(item, options, root), 0
    assert isinstance(item, ImageItem) and isinstance(options, ImagesConfig)
    return list(iter_item_rows(item, options.grayscale)), 0


def _merge_reports(paths: Sequence[Path]) -> dict[str, Any]:
    merged: dict[str, Any] = {"files_read": 0, "patients": 0, "slices_dropped": 0, "skipped": []}
    for path in paths:
        report = json.loads(path.read_text())
        merged["files_read"] += report["files_read"]
        merged["patients"] += report["patients"]  # shards hold distinct patients
        merged["slices_dropped"] += report["slices_dropped"]
        merged["skipped"] += report["skipped"]
    return merged


def _write_json_atomic(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, path)
