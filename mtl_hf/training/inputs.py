"""What training consumes from the data layer, and dataloaders that keep resume exact.

The loaders built here never draw from torch's global random generator: shuffling comes from
Accelerate's seedable sampler (seed + epoch) and the loader's own generator, so a resumed run sees
the same batches in the same order, and the model's mask draws and dropout (which do use the global
generator, restored from the checkpoint) line up with an uninterrupted run. Workers run one thread
each so they do not steal the training step's cores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


class EpochSeeded(Dataset):
    """Give every sample its own random stream, fixed by (seed, epoch, index).

    A sample is then augmented the same way whichever worker loads it, in whichever batch, and whether
    or not the run was resumed in the middle of the epoch, and the training process's own random
    stream (masks, dropout) is left untouched. Accelerate's dataloader calls :meth:`set_epoch` before
    each epoch.

    A batch is fetched in one call (:meth:`__getitems__`, which PyTorch's loader uses): one Arrow query
    and one call of the transform for the whole batch, where :class:`~mtl_hf.data.MTLTransform` draws
    each sample's augmentation from a generator seeded with :meth:`sample_seed`
    (:func:`~mtl_hf.data.transforms.per_sample_seeds`). Anything else in the data set that draws from
    torch's global generator draws from one seeded with the batch's first sample seed, and the global
    generator is restored afterwards.
    """

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def sample_seed(self, index: int) -> int:
        """The seed of sample ``index`` in the current epoch."""
        return (self.seed * 1_000_003 + self.epoch) * 10_000_019 + int(index)

    def __getitem__(self, index: int) -> Any:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        from ..data.transforms import per_sample_seeds

        seeds = [self.sample_seed(i) for i in indices]
        with torch.random.fork_rng(devices=[]), per_sample_seeds(seeds):
            # Only the CPU generator: ``torch.manual_seed`` would also queue a lazy seeding (with a
            # formatted stack trace) for every accelerator backend, and reseed CUDA's generator, which
            # ``fork_rng(devices=[])`` does not restore.
            torch.default_generator.manual_seed(seeds[0])
            fetch = getattr(self.dataset, "__getitems__", None)
            if fetch is not None:
                return list(fetch(list(indices)))
            rows = []
            for index, seed in zip(indices, seeds, strict=True):
                with per_sample_seeds([seed]):
                    rows.append(self.dataset[index])
            return rows


def check_data_source(config: RunConfig) -> None:
    """The cheap checks of ``config.data``, made before a run creates its output folder or builds its
    model (a Hub download): its keys and values, and that its data folder (or manifest) exists.

    Raises:
        OptionsError: an invalid ``data`` section.
        DataError: the data folder or manifest is missing (naming the key and the path).
    """
    from ..data.config import DataConfig
    from ..data.sources import check_source
    from ..options import from_dict

    check_source(from_dict(DataConfig, config.data, "data"))


def build_training_data(config: RunConfig, model: MTLModel) -> TrainingData:
    """Build the splits described by ``config.data`` for ``model`` (its tasks and image size).

    The data source is cached under ``config.cache_dir``; labels reach the tasks through
    ``config.task_columns`` (``{task: dataset column}``).
    """
    from ..data import DataConfig, MTLDataCollator, apply_transforms, prepare_datasets
    from ..options import OptionsError, from_dict
    from .setup import fit_heads_to_training_data
    from .strategies import supervised_tasks

    data_config = from_dict(DataConfig, config.data, "data")
    prepared = prepare_datasets(data_config, cache_dir=config.cache_dir)
    columns = prepared.datasets["train"].column_names
    task_columns = dict(config.task_columns)
    for task in supervised_tasks(model.config):
        if task not in task_columns:
            raise OptionsError(
                f"task_columns: no data column given for task {task!r}; columns are {', '.join(columns)}"
            )
    for task, column in task_columns.items():
        if column not in columns:
            raise OptionsError(
                f"task_columns.{task}: no column {column!r} in the data; columns are {', '.join(columns)}"
            )
    task_columns = {t: c for t, c in task_columns.items() if t in model.config.task_names}
    fit_heads_to_training_data(model, prepared.datasets["train"], task_columns)
    _check_channels(prepared.datasets["train"], data_config, model.backbone.config.num_channels)
    processor = MTLImageProcessor.for_backbone(model.config.backbone_config, **data_config.processor_kwargs())
    splits = apply_transforms(prepared.datasets, data_config, processor)
    collate = MTLDataCollator.for_dataset(prepared.datasets["train"], task_columns)
    from ..data.statistics import label_statistics

    targets = [c for c in dict.fromkeys(task_columns.values()) if c in prepared.target_kinds]
    summary = {
        "sizes": {name: len(ds) for name, ds in prepared.datasets.items()},
        "patients": {
            name: len(set(ds.with_format(None)["patient_id"])) for name, ds in prepared.datasets.items()
        },
        "label_counts": {
            split: {column: counts.to_dict() for column, counts in columns.items()}
            for split, columns in label_statistics(prepared.datasets, targets).items()
        },
        "split_manifest": prepared.split_manifest_path,
        "target_kinds": prepared.target_kinds,
        "label_names": prepared.label_names,
        "task_columns": task_columns,
        "files_skipped": len(getattr(prepared.summary, "skipped", []) or []),
    }
    return TrainingData(
        train=EpochSeeded(splits["train"], config.training.seed),
        validation=splits["validation"],
        test=splits["test"] if len(splits["test"]) else None,
        collate_fn=collate,
        processor=processor,
        split_manifest_hash=prepared.split_manifest_sha256,
        summary=summary,
    )


def _check_channels(dataset: Any, data_config: Any, num_channels: int) -> None:
    """Stop before training when the data's images (their first sample) have channels the backbone
    does not take, saying what to change."""
    from ..data import decode_image
    from ..image_processing_mtl import channel_mismatch, to_chw_tensor
    from ..options import OptionsError

    if not len(dataset):
        return
    channels = int(to_chw_tensor(decode_image(dataset[0])).shape[0])
    problem = channel_mismatch(channels, num_channels)
    if problem is not None:
        raise OptionsError(f"data: {problem}; {data_config.channel_advice(channels)}")
