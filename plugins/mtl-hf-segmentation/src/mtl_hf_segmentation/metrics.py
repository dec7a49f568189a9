"""Dice of thresholded predictions, the standard overlap score of lesion segmentation.

For one image with predicted mask ``P`` (``sigmoid(logits) > threshold``) and true mask ``G``::

    dice = 2 |P ∩ G| / (|P| + |G|)          and dice = 1 when both masks are empty

The mean over images (``dice``) weighs every slice equally; the pooled score (``dice_global``) sums the
overlaps and sizes over the whole set first, so large lesions weigh more. Both are reported because
slices without a lesion are frequent in BraTS: an empty prediction on them scores 1 per image.

Both scores are functions of sums of per-image statistics (:data:`STATISTICS`): the evaluation loop of
mtl-hf gathers those rows from every process and bootstraps them over patients.
"""

from __future__ import annotations

import torch

STATISTICS = ("dice", "count", "overlap", "predicted", "true")
"""Columns of :func:`dice_statistics`: each image's Dice, 1, ``|P ∩ G|``, ``|P|``, ``|G|``."""


def dice_statistics(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """``(B, 5)`` float64 statistics of each image (columns :data:`STATISTICS`), from ``logits`` and
    0/1 ``target`` of shape ``(B, H, W)``."""
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and masks {tuple(target.shape)} differ in shape")
    pred = (torch.sigmoid(logits.float()) > threshold).flatten(1)
    true = target.bool().flatten(1)
    overlap = (pred & true).sum(1).double()
    predicted, actual = pred.sum(1).double(), true.sum(1).double()
    sizes = predicted + actual
    dice = torch.where(sizes > 0, 2.0 * overlap / sizes.clamp_min(1.0), torch.ones_like(sizes))
    return torch.stack([dice, torch.ones_like(dice), overlap, predicted, actual], dim=1)


def dice_from_sums(sums: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"dice": mean per-image Dice, "dice_global": pooled Dice}`` from ``(..., 5)`` sums of
    :func:`dice_statistics` rows (NaN for an empty set; pooled Dice 1 when no mask has a pixel)."""
    dice, count, overlap, predicted, actual = sums.double().unbind(-1)
    sizes = predicted + actual
    pooled = torch.where(sizes > 0, 2.0 * overlap / sizes.clamp_min(1.0), torch.ones_like(sizes))
    mean = torch.where(count > 0, dice / count.clamp_min(1.0), torch.full_like(count, float("nan")))
    return {"dice": mean, "dice_global": pooled}


def dice_per_image(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Dice of each image, ``(B,)``."""
    return dice_statistics(logits, target, threshold)[:, 0]


def segmentation_metrics(
    logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5
) -> dict[str, float]:
    """``{"dice": mean per-image Dice, "dice_global": pooled Dice}`` over a set of ``(B, H, W)`` masks."""
    sums = dice_statistics(logits, target, threshold).sum(0)
    return {name: float(value) for name, value in dice_from_sums(sums).items()}
