"""What training consumes from the data layer, and dataloaders that keep resume exact.

The loaders built here never draw from torch's global random generator: shuffling comes from
Accelerate's seedable sampler (seed + epoch) and the loader's own generator, so a resumed run sees
the same batches in the same order, and the model's mask draws and dropout (which do use the global
generator, restored from the checkpoint) line up with an uninterrupted run. Workers run one thread
each so they do not steal the training step's cores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..image_processing_mtl import MTLImageProcessor

if TYPE_CHECKING:
    from ..modeling_mtl import MTLModel
    from .config import RunConfig


@dataclass
class TrainingData:
    """Prepared splits for one run.

    Attributes:
        train, validation, test: Map-style datasets yielding examples for ``collate_fn`` (``test`` may be ``None``).
        collate_fn: Turns a list of examples into a batch ``{"pixel_values", "labels": {task: tensor},
            "patient_id", ...}``.
        processor: The image processor saved with the model.
        split_manifest_hash: Identifies the patient split (recorded in ``run_info.json``), if known.
        summary: Counts and label statistics for the run record and model card.
    """

    train: Dataset
    validation: Dataset
    test: Dataset | None
    collate_fn: Callable[[list[Any]], dict[str, Any]]
    processor: MTLImageProcessor
    split_manifest_hash: str | None = None
    summary: dict[str, Any] | None = None


def _one_thread_worker(worker_id: int) -> None:
    torch.set_num_threads(1)


def make_loader(
    dataset: Dataset, data: TrainingData, batch_size: int, *, shuffle: bool, seed: int, num_workers: int
) -> DataLoader:
    """A dataloader with its own seeded generator and one-thread workers."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=data.collate_fn,
        num_workers=num_workers,
        generator=generator,
        worker_init_fn=_one_thread_worker if num_workers else None,
        persistent_workers=False,
    )


def build_training_data(config: RunConfig, model: MTLModel) -> TrainingData:
    """Build the splits described by ``config.data`` for ``model`` (its tasks and image size)."""
    from ..data.training_data import training_data_from_config

    return training_data_from_config(config, model)
