"""Collate transformed rows into the batch :class:`~mtl_hf.MTLModel` and the training loop consume.

Batch format::

    {
        "pixel_values": float (B, C, H, W),        # normalised by the model's image processor
        "labels": {task_name: tensor},             # as the column's data kind says (mtl_hf.data.kinds):
                                                   # binary float (B,), multiclass long (B,), multilabel
                                                   # float (B, L), continuous float (B, K); NaN or
                                                   # IGNORE_INDEX where a sample has no label
        "patient_id": list[str],
        "sample_id": list[str],
        "lesion_mask": bool (B, H, W),             # only when some row has a mask
        "has_lesion_mask": bool (B,),              # which rows had one (others are all False)
    }

Tasks are tied to dataset columns by a mapping ``{task_name: column}``; tasks without labels (masked
image modeling) are simply not in it. The column ``mask`` (:data:`MASK_COLUMN`) feeds a segmentation task
the rows' ``lesion_mask`` as float 0/1 labels ``(B, H, W)``; every row of the batch must have a mask. The MIM mask is not drawn here: the model draws one per sample
(:func:`mtl_hf.masking.random_block_mask`) when the batch has none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from .config import TargetKind
from .errors import DataError
from .kinds import data_kind, kind_of_feature

if TYPE_CHECKING:
    from datasets import Dataset

MASK_COLUMN = "mask"
"""The data column whose (resized, augmented, ``lesion_labels``-binarised) masks label a segmentation task."""


class MTLDataCollator:
    """Stack rows from :class:`~mtl_hf.data.MTLTransform` into a batch (see module docstring).

    Args:
        task_columns: ``{task_name: dataset column}``, e.g. ``{"classification": "tumour"}``.
        target_kinds: ``{column: data kind}`` (``"binary"``, ``"multiclass"``, ``"multilabel"``,
            ``"continuous"``, see :mod:`mtl_hf.data.kinds`); read from ``features`` when not given.
        num_labels: ``{column: width}`` of the columns whose batch labels are ``(B, L)`` or ``(B, K)``
            (multilabel, continuous); from ``features`` when not given.
        features: The data set's ``datasets.Features``, whose column features tell the kinds.
    """

    def __init__(
        self,
        task_columns: Mapping[str, str],
        *,
        target_kinds: Mapping[str, TargetKind] | None = None,
        num_labels: Mapping[str, int] | None = None,
        features: Mapping[str, Any] | None = None,
    ) -> None:
        self.task_columns = dict(task_columns)
        kinds: dict[str, TargetKind] = dict(target_kinds or {})
        sizes: dict[str, int | None] = dict(num_labels or {})
        for column in self.task_columns.values():
            if column == MASK_COLUMN:
                continue
            if column in kinds and (column in sizes or not data_kind(kinds[column]).has_width):
                continue
            if features is None or column not in features:
                raise ValueError(
                    f"column {column!r}: its target kind is unknown; pass target_kinds (and num_labels "
                    "for multilabel or continuous columns) or the data set's features"
                )
            kind = kind_of_feature(features[column])
            kinds.setdefault(column, kind.kind)
            sizes.setdefault(column, kind.size_of(features[column]))
        self.target_kinds = kinds
        self.num_labels = sizes

    @classmethod
    def for_dataset(cls, dataset: Dataset, task_columns: Mapping[str, str]) -> MTLDataCollator:
        """A collator reading target kinds from ``dataset.features``."""
        return cls(task_columns, features=dataset.features)

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not rows:
            raise ValueError("cannot collate an empty batch")
        batch: dict[str, Any] = {
            "pixel_values": stack_rows([torch.as_tensor(r["pixel_values"]) for r in rows]).float(),
            "labels": {task: self._labels(rows, column) for task, column in self.task_columns.items()},
            "patient_id": [str(r["patient_id"]) for r in rows],
            "sample_id": [str(r["sample_id"]) for r in rows],
        }
        if "has_lesion_mask" in rows[0]:
            has = torch.tensor([bool(r["has_lesion_mask"]) for r in rows])
            if has.any():
                batch["lesion_mask"] = stack_rows([torch.as_tensor(r["lesion_mask"]) for r in rows]).bool()
                batch["has_lesion_mask"] = has
        return batch

    def _labels(self, rows: Sequence[Mapping[str, Any]], column: str) -> torch.Tensor:
        if column == MASK_COLUMN:
            return self._masks(rows)
        values = [r[column] for r in rows]
        return data_kind(self.target_kinds[column]).collate(values, self.num_labels.get(column))

    @staticmethod
    def _masks(rows: Sequence[Mapping[str, Any]]) -> torch.Tensor:
        missing = [
            str(r.get("sample_id", i)) for i, r in enumerate(rows) if not r.get("has_lesion_mask", False)
        ]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise DataError(
                shown,
                f"no segmentation mask, but a task reads the {MASK_COLUMN!r} column (task_columns); "
                "every sample of a segmentation task needs one",
            )
        return torch.stack([torch.as_tensor(r["lesion_mask"]) for r in rows]).float()


def stack_rows(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``torch.stack(tensors)``, without the copy when the tensors are consecutive rows of one tensor, as
    the rows of a batch transform's output are (``datasets`` cuts the batch into rows as views): then a
    view of that tensor's memory (a batch of 224-px, 4-channel images is 6.4 MB to copy and fault in)."""
    first = tensors[0]
    step, start = first.numel(), first.storage_offset()
    memory = first.untyped_storage().data_ptr()
    consecutive = all(
        t.shape == first.shape
        and t.dtype == first.dtype
        and t.is_contiguous()
        and t.untyped_storage().data_ptr() == memory
        and t.storage_offset() == start + i * step
        for i, t in enumerate(tensors)
    )
    if not consecutive:
        return torch.stack(list(tensors))
    return first.as_strided((len(tensors), *first.shape), (step, *first.stride()), start)


def worker_init_fn(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=...)``: one thread per data-loader worker, so workers decoding and
    augmenting never compete with the training step's threads (on a CPU the step uses them all).

    PyTorch already sets torch's own thread count to 1 in its workers; this also limits the BLAS and
    OpenMP pools that NumPy and SciPy use (through ``threadpoolctl``, installed with scikit-learn),
    which a worker would otherwise inherit from the training process.
    """
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return
    threadpool_limits(limits=1)
