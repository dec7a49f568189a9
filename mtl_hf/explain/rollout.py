"""Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers", arXiv:2005.00928).

Attention in one layer says how tokens mix in that layer; rollout follows the mixing through all layers.
Per layer ``l``, heads are fused (mean by default) into ``A_l`` ``(T, T)``, the residual connection is
accounted for by ``A'_l = (1 - r) A_l + r I`` (``r = 0.5`` as in the paper), rows are renormalised to
sum to one, and the layers are multiplied in order::

    R = A'_L A'_(L-1) ... A'_1

``R[i, j]`` is how much of token ``j``'s input flows into token ``i``'s output. The CLS row restricted to
the patch tokens is the rollout map (:func:`mtl_hf.explain.attention.attention_maps`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

HeadFusion = Literal["mean", "max", "min"]


def fuse_heads(attention: torch.Tensor, head_fusion: HeadFusion = "mean") -> torch.Tensor:
    """``(B, heads, T, T)`` -> ``(B, T, T)`` by the mean (the paper), max or min over heads."""
    if attention.dim() != 4:
        raise ValueError(f"expected attention of shape (B, heads, T, T), got {tuple(attention.shape)}")
    if head_fusion == "mean":
        return attention.mean(dim=1)
    if head_fusion == "max":
        return attention.amax(dim=1)
    if head_fusion == "min":
        return attention.amin(dim=1)
    raise ValueError(f"head_fusion must be 'mean', 'max' or 'min', got {head_fusion!r}")


def attention_rollout(
    attentions: Sequence[torch.Tensor],
    *,
    head_fusion: HeadFusion = "mean",
    residual: float = 0.5,
    start_layer: int = 0,
) -> torch.Tensor:
    """The rolled-out attention ``R`` ``(B, T, T)`` of per-layer attentions ``(B, heads, T, T)``.

    Args:
        attentions: One tensor per layer, first layer first (as transformers returns them).
        head_fusion: How heads are combined per layer: ``"mean"`` (default), ``"max"`` or ``"min"``.
        residual: Weight ``r`` of the identity added for the residual connection, in ``[0, 1)``; 0.5 in
            the paper, 0 for the raw product of attention matrices.
        start_layer: Leave out the layers before this one.
    """
    if not 0.0 <= residual < 1.0:
        raise ValueError(f"residual must be in [0, 1), got {residual}")
    layers = list(attentions)[start_layer:]
    if not layers:
        raise ValueError(
            f"no attention layers to roll out (got {len(attentions)}, start_layer={start_layer})"
        )
    rollout: torch.Tensor | None = None
    for attention in layers:
        a = fuse_heads(attention.float(), head_fusion)
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = (1.0 - residual) * a + residual * eye
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    assert rollout is not None
    return rollout
