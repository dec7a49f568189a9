"""Dice of thresholded predictions, the standard overlap score of lesion segmentation.

For one image with predicted mask ``P`` (``sigmoid(logits) > threshold``) and true mask ``G``::

    dice = 2 |P ∩ G| / (|P| + |G|)          and dice = 1 when both masks are empty

The mean over images (``dice``) weighs every slice equally; the pooled score (``dice_global``) sums the
overlaps and sizes over the whole set first, so large lesions weigh more. Both are reported because
slices without a lesion are frequent in BraTS: an empty prediction on them scores 1 per image.
"""

from __future__ import annotations

import torch


def dice_per_image(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Dice of each image, ``(B,)``, from ``logits`` and 0/1 ``target`` of shape ``(B, H, W)``."""
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and masks {tuple(target.shape)} differ in shape")
    pred = (torch.sigmoid(logits.float()) > threshold).flatten(1)
    true = target.bool().flatten(1)
    overlap = (pred & true).sum(1).float()
    sizes = (pred.sum(1) + true.sum(1)).float()
    return torch.where(sizes > 0, 2.0 * overlap / sizes.clamp_min(1.0), torch.ones_like(sizes))


def segmentation_metrics(
    logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5
) -> dict[str, float]:
    """``{"dice": mean per-image Dice, "dice_global": pooled Dice}`` over a set of ``(B, H, W)`` masks."""
    per_image = dice_per_image(logits, target, threshold)
    pred = (torch.sigmoid(logits.float()) > threshold).flatten()
    true = target.bool().flatten()
    sizes = float(pred.sum() + true.sum())
    pooled = 2.0 * float((pred & true).sum()) / sizes if sizes > 0 else 1.0
    return {"dice": float(per_image.mean()), "dice_global": pooled}
