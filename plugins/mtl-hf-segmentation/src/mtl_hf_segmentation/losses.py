"""Dice + binary cross-entropy, the usual loss of binary lesion segmentation (e.g. nnU-Net's Dice + CE).

With ``p = sigmoid(logits)`` and ``g`` the 0/1 mask of one image, summed over its pixels::

    dice_loss = 1 - mean over images of (2 * sum(p * g) + s) / (sum(p) + sum(g) + s)
    bce       = mean over all pixels of -(w * g * log(p) + (1 - g) * log(1 - p))      (w: pos_weight, default 1)
    loss      = dice_weight * dice_loss + bce_weight * bce

The smoothing ``s`` (default 1) keeps the Dice term defined on images without a lesion (BraTS slices
above or below the tumour), where it then pushes predictions towards an empty mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """``1 -`` the mean soft Dice coefficient over images; ``logits`` and ``target`` are ``(B, H, W)``."""
    probs = torch.sigmoid(logits.float()).flatten(1)
    target = target.float().flatten(1)
    intersection = (probs * target).sum(1)
    dice = (2.0 * intersection + smooth) / (probs.sum(1) + target.sum(1) + smooth)
    return 1.0 - dice.mean()


def dice_bce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    dice_weight: float = 1.0,
    bce_weight: float = 1.0,
    smooth: float = 1.0,
    pos_weight: float | None = None,
) -> torch.Tensor:
    """``dice_weight * soft_dice_loss + bce_weight * BCE`` (see the module docstring)."""
    target = target.float()
    weight = None if pos_weight is None else logits.new_tensor(pos_weight, dtype=torch.float32)
    bce = F.binary_cross_entropy_with_logits(logits.float(), target, pos_weight=weight)
    return dice_weight * soft_dice_loss(logits, target, smooth) + bce_weight * bce
