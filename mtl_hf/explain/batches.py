"""Batches for explaining: the project's batch format, from a loader, an iterable or a data set.

A batch is a dict with ``pixel_values`` ``(B, C, H, W)`` (normalised), optionally ``lesion_mask``
``(B, H, W)`` at the same size (with ``has_lesion_mask`` ``(B,)`` when only some rows have one, as
:class:`mtl_hf.data.MTLDataCollator` gives it) and ``patient_id`` (list of str). Map-style data sets (torch, or 🤗
``datasets`` in torch format) are batched with ``torch.utils.data.default_collate``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch


def iter_batches(data: Any, batch_size: int) -> Iterable[Any]:
    """Batches of ``data``: a ``DataLoader`` or iterable of batch dicts as is, a single batch dict as a
    one-batch list, a map-style data set batched by ``batch_size`` in order."""
    from torch.utils.data import DataLoader, Dataset, default_collate

    if isinstance(data, DataLoader):
        return data
    is_hf = False
    try:
        import datasets

        is_hf = isinstance(data, datasets.Dataset)
    except ImportError:  # pragma: no cover - datasets is a dependency
        pass
    if isinstance(data, Dataset) or is_hf:
        return DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=default_collate)
    if isinstance(data, Mapping):
        return [data]
    return data


def lesion_masks(batch: Mapping[str, Any]) -> torch.Tensor | None:
    """The batch's ``(B, H, W)`` bool lesion masks, all False on rows whose ``has_lesion_mask`` is False
    (rows without a mask); ``None`` when the batch has no masks."""
    if batch.get("lesion_mask") is None:
        return None
    mask = torch.as_tensor(batch["lesion_mask"])
    if mask.dim() == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    mask = mask > 0
    has = batch.get("has_lesion_mask")
    if has is not None:
        mask = mask & torch.as_tensor(has, dtype=torch.bool).view(-1, 1, 1)
    return mask


def unpack_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor, list[str] | None]:
    """``(pixel_values, lesion_mask (B, H, W), patient ids or None)`` of a batch that must have masks."""
    if not isinstance(batch, Mapping):
        raise TypeError(
            f"expected batches as dicts with 'pixel_values' and 'lesion_mask', got {type(batch).__name__}"
        )
    for key in ("pixel_values", "lesion_mask"):
        if key not in batch or batch[key] is None:
            raise ValueError(f"batch has no {key!r}; attention localization needs images with lesion masks")
    pixel_values = torch.as_tensor(batch["pixel_values"])
    mask = lesion_masks(batch)
    assert mask is not None
    if mask.shape[0] != pixel_values.shape[0] or tuple(mask.shape[-2:]) != tuple(pixel_values.shape[-2:]):
        raise ValueError(
            f"lesion_mask {tuple(mask.shape)} must be (B, H, W) at pixel_values' size {tuple(pixel_values.shape)}"
        )
    patients = batch.get("patient_id")
    return pixel_values, mask, None if patients is None else [str(p) for p in patients]
