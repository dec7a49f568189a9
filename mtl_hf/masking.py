"""SimMIM-style random block masks on a coarse grid, for any patch size and image size.

SimMIM (Xie et al. 2022) masks square blocks of ``mask_patch_size`` pixels (32 by default) with a
ratio of 0.6, then upsamples the coarse mask to the model's patch grid. This module generalises it:

* The coarse cell covers ``scale = max(1, round(mask_patch_size / patch_size))`` patches per side, so a
  patch size that does not divide 32 (DINOv2's 14: scale ``round(32 / 14) = 2``, i.e. 28-px blocks)
  still gets blocks of about ``mask_patch_size`` pixels.
* The coarse grid is ``ceil(h / scale) x ceil(w / scale)``; the upsampled mask is cropped to the patch
  grid, so grids that the scale does not divide are handled.
* If the coarse grid would have fewer than 4 cells (tiny images), blocks shrink to single patches.
* Exactly ``round(mask_ratio * cells)`` coarse cells are masked per sample, clamped to ``[1, cells]``.
  The masked fraction of *patches* equals the ratio up to that rounding and to the crop at the border.

Masks are drawn per sample from torch's global RNG (or ``generator``), so ``accelerate.utils.set_seed``
makes them reproducible.
"""

from __future__ import annotations

import math

import torch


def coarse_scale(patch_size: int, mask_patch_size: int, grid_size: tuple[int, int]) -> int:
    """Patches per side of one mask block (see module docstring)."""
    scale = max(1, round(mask_patch_size / patch_size))
    h, w = grid_size
    if math.ceil(h / scale) * math.ceil(w / scale) < 4:
        scale = 1
    return scale


def random_block_mask(
    batch_size: int,
    grid_size: tuple[int, int],
    patch_size: int,
    mask_patch_size: int = 32,
    mask_ratio: float = 0.6,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw a ``(batch_size, h * w)`` bool mask (True = masked), row-major over the patch grid."""
    if not 0.0 < mask_ratio <= 1.0:
        raise ValueError(f"mask_ratio must be in (0, 1], got {mask_ratio}")
    h, w = grid_size
    scale = coarse_scale(patch_size, mask_patch_size, grid_size)
    ch, cw = math.ceil(h / scale), math.ceil(w / scale)
    cells = ch * cw
    num_masked = min(cells, max(1, round(mask_ratio * cells)))
    noise = torch.rand(
        batch_size, cells, generator=generator, device=generator.device if generator else device
    )
    ranks = noise.argsort(dim=1).argsort(dim=1)
    coarse = (ranks < num_masked).view(batch_size, ch, cw)
    fine = coarse.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)[:, :h, :w]
    return fine.reshape(batch_size, h * w).to(device)


def pixel_mask(bool_masked_pos: torch.Tensor, grid_size: tuple[int, int], patch_size: int) -> torch.Tensor:
    """``(B, 1, H, W)`` float mask, 1 on the pixels of masked patches (for losses and figures)."""
    h, w = grid_size
    m = bool_masked_pos.reshape(-1, h, w).repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2)
    return m.unsqueeze(1).to(torch.float32)
