"""SimMIM-style masked image modeling (Xie et al. 2022, arXiv:2111.09886): the paper's reconstruction task.

The backbone sees the image with masked patch embeddings replaced by its learnable mask token
(``bool_masked_pos``); this head decodes every patch token with a 1x1 convolution to
``patch_size**2 * channels`` values and a PixelShuffle back to image resolution, and the loss is taken
over masked pixels only.

Loss, with ``M`` the pixel mask (1 on masked patches), ``C`` channels, ``x`` the normalised input and
``r`` the reconstruction::

    loss = sum(M * err(r, x)) / (C * max(1, sum(M)))      err = (r - x)**2  (mse, the paper) | |r - x|  (l1, SimMIM)

i.e. the mean error over masked pixels and channels. A batch whose mask hides no patch gives a loss of
exactly zero (and zero gradient), not NaN. With ``norm_target`` the target is each patch normalised
by its own mean and standard deviation per channel (MAE's ``norm_pix_loss``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..masking import pixel_mask, random_block_mask
from .base import HEADS, BackboneFeatures, BackboneSpec, HeadOptions, HeadOutput, TaskHead


@dataclass
class MaskedImageModelingOptions(HeadOptions):
    """Options of ``mim``.

    Attributes:
        mask_ratio: Share of mask blocks hidden per image, in (0, 1] (default 0.6, SimMIM's).
        mask_patch_size: Side in pixels of a mask block (default 32, SimMIM's); see :mod:`mtl_hf.masking`
            for patch sizes that do not divide it.
        loss: ``"mse"`` (default, the paper) or ``"l1"`` (SimMIM).
        norm_target: Normalise the target per patch and channel (default False).
    """

    mask_ratio: float = 0.6
    mask_patch_size: int = 32
    loss: Literal["mse", "l1"] = "mse"
    norm_target: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1], got {self.mask_ratio}")
        if self.mask_patch_size < 1:
            raise ValueError(f"mask_patch_size must be positive, got {self.mask_patch_size}")


@HEADS.register("mim")
class MaskedImageModelingHead(TaskHead):
    """Masked image modeling on the masked view; needs no labels. ``reconstruction``: ``(B, C, H, W)``."""

    Options = MaskedImageModelingOptions
    options: MaskedImageModelingOptions
    view = "masked"
    requires_labels = False

    def __init__(self, task_name: str, options: MaskedImageModelingOptions, backbone: BackboneSpec) -> None:
        super().__init__(task_name, options, backbone)
        p, c = backbone.patch_size, backbone.num_channels
        self.decoder = nn.Sequential(
            nn.Conv2d(backbone.hidden_size, p * p * c, kernel_size=1),
            nn.PixelShuffle(p),
        )

    def sample_mask(
        self,
        batch_size: int,
        grid_size: tuple[int, int],
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return random_block_mask(
            batch_size,
            grid_size,
            self.backbone.patch_size,
            self.options.mask_patch_size,
            self.options.mask_ratio,
            device=device,
            generator=generator,
        )

    def forward(self, features: BackboneFeatures, labels: torch.Tensor | None = None) -> HeadOutput:
        if features.bool_masked_pos is None:
            raise ValueError(f"task {self.task_name!r} (mim) needs the masked view (bool_masked_pos)")
        reconstruction = self.decoder(features.patch_map())
        target = features.pixel_values
        pixel_mask = self.pixel_mask(features.bool_masked_pos, features.grid_size)
        loss = reconstruction_loss(
            reconstruction,
            target,
            pixel_mask,
            self.options.loss,
            self.backbone.patch_size if self.options.norm_target else None,
        )
        return HeadOutput(loss=loss, reconstruction=reconstruction)

    def reconstruction_to_pixels(
        self, reconstruction: torch.Tensor, pixel_values: torch.Tensor
    ) -> torch.Tensor:
        """The reconstruction in the space of ``pixel_values`` (for figures): with ``norm_target`` the head
        predicts each patch normalised by its own statistics, so those of ``pixel_values`` are put back."""
        if not self.options.norm_target:
            return reconstruction
        return denormalize_patches(reconstruction, pixel_values, self.backbone.patch_size)

    def pixel_mask(self, bool_masked_pos: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
        """``(B, 1, H, W)`` float mask, 1 on pixels of masked patches."""
        return pixel_mask(bool_masked_pos, grid_size, self.backbone.patch_size)


def reconstruction_loss(
    reconstruction: torch.Tensor,
    target: torch.Tensor,
    pixel_mask: torch.Tensor,
    kind: Literal["mse", "l1"] = "mse",
    norm_patch_size: int | None = None,
) -> torch.Tensor:
    """Mean ``kind`` error over masked pixels and channels (see the module docstring)."""
    reconstruction = reconstruction.float()
    target = target.float()
    if norm_patch_size is not None:
        target = normalize_patches(target, norm_patch_size)
    diff = reconstruction - target
    err = diff.square() if kind == "mse" else diff.abs()
    channels = target.shape[1]
    return (err * pixel_mask).sum() / (pixel_mask.sum().clamp_min(1.0) * channels)


def normalize_patches(x: torch.Tensor, patch_size: int, eps: float = 1e-6) -> torch.Tensor:
    """Normalise each ``patch_size`` square of ``x`` ``(B, C, H, W)`` to zero mean, unit variance per channel."""
    b, c, h, w = x.shape
    p = patch_size
    patches = x.reshape(b, c, h // p, p, w // p, p)
    mean = patches.mean(dim=(3, 5), keepdim=True)
    var = patches.var(dim=(3, 5), keepdim=True, unbiased=False)
    return ((patches - mean) / (var + eps).sqrt()).reshape(b, c, h, w)


def denormalize_patches(
    x: torch.Tensor, reference: torch.Tensor, patch_size: int, eps: float = 1e-6
) -> torch.Tensor:
    """Inverse of :func:`normalize_patches` using the per-patch, per-channel statistics of ``reference``."""
    b, c, h, w = reference.shape
    p = patch_size
    ref = reference.float().reshape(b, c, h // p, p, w // p, p)
    mean = ref.mean(dim=(3, 5), keepdim=True)
    std = (ref.var(dim=(3, 5), keepdim=True, unbiased=False) + eps).sqrt()
    return (x.float().reshape(b, c, h // p, p, w // p, p) * std + mean).reshape(b, c, h, w)
