"""The evaluation batches of a training run's data: what ``mtl-hf explain --dataset`` reads.

A training config (``config.yaml``, which every run folder holds) names the data source, the split
and the task columns; :func:`split_loader` rebuilds that split exactly as training did (same Arrow
cache, same split manifest, the evaluation transform, which carries the lesion masks of BraTS slices
and of image sets with mask columns) and batches it in order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from ..data.errors import DataError
from ..run_folder import RunFolder

SPLIT_NAMES = ("validation", "test")


def find_run_config(path: str | os.PathLike[str]) -> Path:
    """``path`` itself for a YAML file, or ``config.yaml`` in a run folder (or the run above a
    ``best_model/`` folder)."""
    p = Path(path)
    if p.is_file():
        return p
    run = RunFolder.of_model(p) or RunFolder(p)
    if run.config_file.is_file():
        return run.config_file
    raise FileNotFoundError(f"{p}: not a training config file nor a run folder with {RunFolder.CONFIG}")


def split_loader(
    config_or_run: str | os.PathLike[str],
    model: Any,
    *,
    split: str = "test",
    batch_size: int = 16,
    cache_dir: str | os.PathLike[str] | None = None,
) -> DataLoader:
    """Batches of ``split`` of the data described by a training config, prepared for ``model``.

    Args:
        config_or_run: A training config YAML or a run folder.
        model: The model the batches are for (its tasks pick the label columns, its backbone the size).
        split: ``"test"`` (default) or ``"validation"``, with the evaluation transform (no augmentation).
        batch_size: Images per batch.
        cache_dir: Override the config's data cache folder.
    """
    from ..training.config import load_config
    from ..training.inputs import build_training_data

    if split not in SPLIT_NAMES:
        raise ValueError(f"split must be one of {', '.join(SPLIT_NAMES)}, got {split!r}")
    config = load_config(find_run_config(config_or_run))
    if cache_dir is not None:
        config.cache_dir = os.fspath(cache_dir)
    data = build_training_data(config, model)
    dataset: Any = data.validation if split == "validation" else data.test
    if dataset is None or len(dataset) == 0:
        raise DataError(os.fspath(config_or_run), f"the {split!r} split is empty")
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=data.collate_fn)
