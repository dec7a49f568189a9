"""Masks over the patch grid, and the patch layout of images: one place for both.

* :func:`random_block_mask`: SimMIM's block masks (below); :func:`random_patch_mask`: MAE's masks of
  single patches; :func:`pixel_mask`: a patch mask at pixel resolution.
* :func:`patchify` / :func:`unpatchify`: images as rows of flattened patches and back;
  :func:`normalize_patches` / :func:`denormalize_patches`: each patch normalised by its own mean and
  standard deviation (per channel, or over all its values) and back.

Block masks: SimMIM (Xie et al. 2022) masks square blocks of ``mask_patch_size`` pixels (32 by default) with a
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

Patch layout: patch ``i * w + j`` of an ``h x w`` grid covers rows ``i*p .. i*p + p - 1`` and columns
``j*p .. j*p + p - 1``; flattened, its values run over rows, then columns, then channels (MAE's order).
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


def random_patch_mask(
    batch_size: int,
    grid_size: tuple[int, int],
    mask_ratio: float,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``(batch_size, h * w)`` bool, True = masked: ``round(mask_ratio * h * w)`` patches per sample
    (at least one masked and one visible), chosen uniformly at random per sample (MAE's shuffle)."""
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
    n = grid_size[0] * grid_size[1]
    if n < 2:
        raise ValueError(f"a patch grid of {grid_size} leaves no patch both to mask and to keep")
    num_masked = min(n - 1, max(1, round(mask_ratio * n)))
    noise = torch.rand(batch_size, n, generator=generator, device=generator.device if generator else device)
    ranks = noise.argsort(dim=1).argsort(dim=1)
    return (ranks < num_masked).to(device)


def _blocks(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, C, H, W)`` viewed as ``(B, C, h, p, w, p)``; ``H`` and ``W`` must be multiples of ``p``."""
    b, c, height, width = images.shape
    p = patch_size
    if height % p or width % p:
        raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {p}")
    return images.reshape(b, c, height // p, p, width // p, p)


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, N, p * p * C)``, patches in row-major grid order, values ``(p, p, C)``."""
    b, c, height, width = images.shape
    p = patch_size
    x = _blocks(images, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, (height // p) * (width // p), p * p * c)


def unpatchify(
    patches: torch.Tensor, patch_size: int, grid_size: tuple[int, int], channels: int
) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(B, N, p * p * C)`` -> ``(B, C, H, W)``."""
    b = patches.shape[0]
    p = patch_size
    h, w = grid_size
    x = patches.reshape(b, h, w, p, p, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, channels, h * p, w * p)


def _patch_statistics(
    reference: torch.Tensor, patch_size: int, per_channel: bool, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and ``sqrt(var + eps)`` (population variance) of each patch of ``reference``, broadcastable
    against :func:`_blocks`; per channel, or over all ``p * p * C`` values of a patch."""
    blocks = _blocks(reference, patch_size)
    dims = (3, 5) if per_channel else (1, 3, 5)
    mean = blocks.mean(dim=dims, keepdim=True)
    std = (blocks.var(dim=dims, keepdim=True, unbiased=False) + eps).sqrt()
    return mean, std


def normalize_patches(
    x: torch.Tensor, patch_size: int, *, per_channel: bool, eps: float = 1e-6
) -> torch.Tensor:
    """Each ``patch_size`` square of ``x`` ``(B, C, H, W)`` minus its mean, divided by
    ``sqrt(var + eps)``: per channel (SimMIM) or over all its channels together (MAE's ``norm_pix_loss``)."""
    mean, std = _patch_statistics(x, patch_size, per_channel, eps)
    return ((_blocks(x, patch_size) - mean) / std).reshape(x.shape)


def denormalize_patches(
    x: torch.Tensor, reference: torch.Tensor, patch_size: int, *, per_channel: bool, eps: float = 1e-6
) -> torch.Tensor:
    """Inverse of :func:`normalize_patches` with the statistics of ``reference``'s patches (float32)."""
    mean, std = _patch_statistics(reference.float(), patch_size, per_channel, eps)
    return (_blocks(x.float(), patch_size) * std + mean).reshape(reference.shape)
