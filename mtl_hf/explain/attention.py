"""DINO-style attention maps of a ViT backbone: where the CLS token looks.

For an image the backbone splits into an ``h x w`` patch grid after ``P`` prefix tokens (CLS, plus
register tokens for DINOv2 with registers), three maps are computed from the clean view's attentions:

* ``heads``: the last layer's CLS-to-patch attention of each head (Caron et al. 2021, DINO, Fig. 1);
* ``mean``: the same averaged over heads (raw attention rows averaged, then restricted to patches);
* ``rollout``: the CLS-to-patch row of the attention rollout over all layers
  (:mod:`mtl_hf.explain.rollout`).

Every map is renormalised to sum to 1 over the patches: attention the CLS token pays to itself and to
registers is not spatial and is left out. A map is then a distribution over the image, which is what
the localization scores (:mod:`mtl_hf.explain.localization`) need.

DINO's mass threshold (:func:`mass_threshold`) keeps the smallest set of patches that holds a given share
of a map's mass (DINO shows 60 %). :func:`upsample_map` brings patch maps to the image's size: ``nearest``
spreads each patch's value evenly over its pixels (exact, used for scores), ``bilinear`` gives smooth
overlays; both are renormalised so the upsampled map sums to 1 over the pixels.

The model is run with ``output_attentions=True``, which switches its backbone to eager attention for
that call only (SDPA returns no attention maps); training keeps its faster attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from .errors import ExplainError
from .rollout import HeadFusion, attention_rollout

MapKind = Literal["mean", "rollout", "heads"]
UpsampleMode = Literal["nearest", "bilinear", "bicubic"]


@dataclass
class AttentionMaps:
    """Patch-level attention maps of a batch; each map sums to 1 over its ``h x w`` patches.

    Attributes:
        heads: ``(B, heads, h, w)`` last-layer CLS-to-patch attention per head.
        mean: ``(B, h, w)`` last-layer CLS-to-patch attention averaged over heads.
        rollout: ``(B, h, w)`` CLS-to-patch attention rollout over all layers (``None`` if not computed).
        patch_size: Pixels per patch side, to bring maps back to the image.
    """

    heads: torch.Tensor
    mean: torch.Tensor
    rollout: torch.Tensor | None
    patch_size: int

    def get(self, kind: MapKind) -> torch.Tensor:
        """The map named ``kind``: ``"mean"``, ``"rollout"`` or ``"heads"``."""
        if kind not in ("mean", "rollout", "heads"):
            raise ValueError(f"map kind must be 'mean', 'rollout' or 'heads', got {kind!r}")
        value = getattr(self, kind)
        if value is None:
            raise ValueError(f"the {kind!r} map was not computed (pass rollout=True)")
        return value

    def upsampled(self, kind: MapKind = "mean", mode: UpsampleMode = "bilinear") -> torch.Tensor:
        """Map ``kind`` at image size ``(B, [heads,] h * patch_size, w * patch_size)``, summing to 1."""
        m = self.get(kind)
        return upsample_map(m, (m.shape[-2] * self.patch_size, m.shape[-1] * self.patch_size), mode)

    def thresholded(self, kind: MapKind = "mean", mass: float = 0.6) -> torch.Tensor:
        """Bool patch mask of the smallest set of patches holding ``mass`` of map ``kind``."""
        return mass_threshold(self.get(kind), mass)


def cls_attention(
    attention: torch.Tensor, num_prefix_tokens: int, grid_size: tuple[int, int]
) -> torch.Tensor:
    """Raw CLS-to-patch attention ``(B, heads, h, w)`` of one layer's attention ``(B, heads, T, T)``.

    Patches are tokens ``num_prefix_tokens .. T-1`` in row-major grid order; CLS is token 0.
    """
    if attention.dim() != 4 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(f"expected attention of shape (B, heads, T, T), got {tuple(attention.shape)}")
    h, w = grid_size
    tokens = attention.shape[-1]
    if tokens != num_prefix_tokens + h * w:
        raise ValueError(
            f"attention has {tokens} tokens but {num_prefix_tokens} prefix tokens + a {h}x{w} grid "
            f"make {num_prefix_tokens + h * w}"
        )
    b, heads = attention.shape[:2]
    return attention[:, :, 0, num_prefix_tokens:].reshape(b, heads, h, w)


def normalize_map(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Scale each map (last two dims) to sum to 1."""
    return maps / maps.sum(dim=(-2, -1), keepdim=True).clamp_min(eps)


def check_mass(mass: float) -> None:
    """Raise :class:`~mtl_hf.explain.errors.ExplainError` unless ``mass`` is in (0, 1]."""
    if not 0.0 < mass <= 1.0:
        raise ExplainError(f"mass must be in (0, 1], got {mass}")


def mass_threshold(maps: torch.Tensor, mass: float = 0.6) -> torch.Tensor:
    """Bool mask of the smallest set of cells holding at least ``mass`` of each map (last two dims).

    Cells are taken from the largest value down until their total reaches ``mass`` of the map's sum
    (DINO's ``--threshold``); ties are broken by position. ``mass`` is in (0, 1].
    """
    check_mass(mass)
    shape = maps.shape
    flat = normalize_map(maps.float()).flatten(-2)
    values, order = flat.sort(dim=-1, descending=True, stable=True)
    before = values.cumsum(dim=-1) - values  # mass of the cells ranked above each cell
    keep_sorted = before < mass - 1e-6
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return keep.reshape(shape)


def upsample_map(maps: torch.Tensor, size: tuple[int, int], mode: UpsampleMode = "bilinear") -> torch.Tensor:
    """Maps ``(..., h, w)`` resized to ``size`` and renormalised to sum to 1 over the pixels.

    ``nearest`` with ``size`` a multiple of the grid spreads each cell's mass evenly over its pixels, so
    the mass inside any region made of whole cells is unchanged.
    """
    lead = maps.shape[:-2]
    x = maps.float().reshape(-1, 1, *maps.shape[-2:])
    kwargs: dict[str, Any] = {} if mode == "nearest" else {"align_corners": False}
    up = F.interpolate(x, size=size, mode=mode, **kwargs)
    if mode == "bicubic":
        up = up.clamp_min(0.0)
    return normalize_map(up.reshape(*lead, *size))


@torch.no_grad()
def attention_maps(
    model: Any,
    pixel_values: torch.Tensor,
    *,
    rollout: bool = True,
    head_fusion: HeadFusion = "mean",
    residual: float = 0.5,
    batch_size: int | None = None,
) -> AttentionMaps:
    """The attention maps of :class:`~mtl_hf.MTLModel` ``model`` for normalised ``pixel_values``.

    Runs one clean backbone pass without heads, in eval mode (the model's mode is restored), on the
    model's device, ``batch_size`` images at a time (all at once by default: the attentions of every
    layer are held in memory during a pass). ``head_fusion`` and ``residual`` are the rollout's (see
    :func:`mtl_hf.explain.rollout.attention_rollout`). Maps are returned on the CPU.
    """
    step = pixel_values.shape[0] if batch_size is None else batch_size
    if step < 1:
        raise ExplainError(f"batch size must be at least 1, got {batch_size}")
    parts = [
        _attention_maps(model, pixel_values[i : i + step], rollout, head_fusion, residual)
        for i in range(0, pixel_values.shape[0], step)
    ]
    if len(parts) == 1:
        return parts[0]
    rolled = [p.rollout for p in parts]
    return AttentionMaps(
        heads=torch.cat([p.heads for p in parts]),
        mean=torch.cat([p.mean for p in parts]),
        rollout=None if rolled[0] is None else torch.cat([r for r in rolled if r is not None]),
        patch_size=parts[0].patch_size,
    )


def _attention_maps(
    model: Any, pixel_values: torch.Tensor, rollout: bool, head_fusion: HeadFusion, residual: float
) -> AttentionMaps:
    was_training = model.training
    model.eval()
    try:
        x = pixel_values.to(device=model.device, dtype=model.dtype)
        out = model(x, tasks=[], output_attentions=True)
    finally:
        model.train(was_training)
    if not out.attentions:
        raise RuntimeError("the backbone returned no attention maps; it must support eager attention")
    grid = model.grid_size(pixel_values)
    prefix = model.num_prefix_tokens
    last = out.attentions[-1].float()
    heads = normalize_map(cls_attention(last, prefix, grid))
    mean = normalize_map(cls_attention(last.mean(dim=1, keepdim=True), prefix, grid)[:, 0])
    rolled = None
    if rollout:
        r = attention_rollout(out.attentions, head_fusion=head_fusion, residual=residual)
        rolled = normalize_map(r[:, 0, prefix:].reshape(r.shape[0], *grid))
    return AttentionMaps(
        heads=heads.cpu(),
        mean=mean.cpu(),
        rollout=None if rolled is None else rolled.cpu(),
        patch_size=model.patch_size,
    )
