"""From a :class:`DataConfig` to train / validation / test ``datasets``: cache, split, sample.

:func:`prepare_datasets` is the one entry point the training loop needs::

    prepared = prepare_datasets(config, cache_dir="runs/cache")
    prepared.datasets["train"]          # after the training fraction and undersampling
    prepared.split_manifest_path        # reused by every later run with the same settings
    prepared.summary.cache_hit          # True the second time

The splits are ``Dataset.select`` views of the one cached Arrow table (no copy). Run it under
``accelerator.main_process_first()`` in distributed training: the first process builds the cache and
writes the split manifest, the others then reuse both.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .cache import BuildSummary, build_cache
from .config import DataConfig, TargetKind
from .sampling import training_fraction, undersample
from .splits import SPLITS, SplitManifest, default_manifest_path, file_sha256, patient_strata, resolve_split
from .statistics import target_kinds, target_label_names

if TYPE_CHECKING:
    from datasets import DatasetDict


@dataclass
class PreparedData:
    """The splits of a data source and how they were made.

    Attributes:
        datasets: ``DatasetDict`` with ``train`` (after fraction and undersampling), ``validation`` and
            ``test``; each a view of the cached data set.
        summary: The cache build summary (cache hit, files read and skipped).
        split_manifest: Which patients are in which split.
        split_manifest_path: Where it is stored.
        split_manifest_sha256: Hash of that file, for ``run_info.json``.
        target_kinds: ``{target column: data kind}`` (see :mod:`mtl_hf.data.kinds`).
        label_names: ``{target column: class or label names}``.
    """

    datasets: DatasetDict
    summary: BuildSummary
    split_manifest: SplitManifest
    split_manifest_path: str
    split_manifest_sha256: str
    target_kinds: dict[str, TargetKind]
    label_names: dict[str, list[str]]


def split_folder(config: DataConfig, cache_dir: str | os.PathLike[str]) -> Path:
    """Where split manifests of ``config.root`` go by default: under the cache, never into the data folder
    (often read-only, and shared); one folder per data root."""
    root = os.path.abspath(os.fspath(config.root))
    return Path(cache_dir) / "splits" / hashlib.sha256(root.encode()).hexdigest()[:16]


def prepare_datasets(
    config: DataConfig, cache_dir: str | os.PathLike[str], *, num_proc: int | None = None
) -> PreparedData:
    """Build (or reuse) the cache of ``config``'s source and split it by patient.

    Args:
        config: The data source, split and sampling settings.
        cache_dir: Folder of the Arrow cache.
        num_proc: Processes for building the cache.

    Raises:
        DataError: bad input (see :class:`~mtl_hf.data.DataError`) or an unusable split manifest.
    """
    from datasets import DatasetDict

    dataset, summary = build_cache(config, cache_dir, num_proc=num_proc)
    kinds = target_kinds(dataset.features, config.target_names)
    target = config.stratify_target
    columns = dataset.select_columns(["patient_id", target])
    patient_ids = list(columns["patient_id"])
    labels = list(columns[target])
    strata = patient_strata(patient_ids, labels, kinds[target])
    fractions = (config.split.train, config.split.validation, config.split.test)
    manifest_path = Path(
        config.split.manifest
        or default_manifest_path(split_folder(config, cache_dir), target, config.seed, fractions)
    )
    manifest = resolve_split(
        strata, seed=config.seed, fractions=fractions, stratify_by=target, manifest_path=manifest_path
    )
    split_of = manifest.split_of()
    indices: dict[str, list[int]] = {name: [] for name in SPLITS}
    for index, patient in enumerate(patient_ids):
        name = split_of.get(patient)
        if name is not None:
            indices[name].append(index)
    sampling = config.sampling
    if sampling.train_fraction < 1.0:
        train_strata = {p: strata[p] for p in manifest.splits["train"] if p in strata}
        kept = training_fraction(train_strata, sampling.train_fraction, config.seed)
        indices["train"] = [i for i in indices["train"] if patient_ids[i] in kept]
    if sampling.undersample:
        indices["train"] = undersample(
            indices["train"], [labels[i] for i in indices["train"]], kinds[target], config.seed
        )
    datasets = DatasetDict({name: dataset.select(indices[name]) for name in SPLITS})
    return PreparedData(
        datasets=datasets,
        summary=summary,
        split_manifest=manifest,
        split_manifest_path=str(manifest_path),
        split_manifest_sha256=file_sha256(manifest_path),
        target_kinds=kinds,
        label_names={name: target_label_names(dataset.features, name) for name in kinds},
    )


def load_datasets(
    config: DataConfig, cache_dir: str | os.PathLike[str], *, num_proc: int | None = None
) -> DatasetDict:
    """The ``DatasetDict`` of :func:`prepare_datasets` alone."""
    return prepare_datasets(config, cache_dir, num_proc=num_proc).datasets
