"""Pooling of backbone tokens into one vector per image, shared by the classification heads."""

from __future__ import annotations

from typing import Literal

import torch

from .base import BackboneFeatures

Pooling = Literal["cls", "mean", "cls+mean"]


def pooled_size(hidden_size: int, pooling: Pooling) -> int:
    """Width of the pooled vector: ``hidden_size``, doubled for ``"cls+mean"``."""
    return 2 * hidden_size if pooling == "cls+mean" else hidden_size


def pool(features: BackboneFeatures, pooling: Pooling) -> torch.Tensor:
    """``"cls"``: the CLS token (DINO's linear-probe choice); ``"mean"``: the mean of patch tokens;
    ``"cls+mean"``: both concatenated."""
    if pooling == "cls":
        return features.cls_token
    mean = features.patch_tokens.mean(dim=1)
    if pooling == "mean":
        return mean
    return torch.cat([features.cls_token, mean], dim=-1)
