"""SimMIM-style masked image modeling (Xie et al. 2022, arXiv:2111.09886): the paper's reconstruction task.

The backbone sees the image with masked patch embeddings replaced by its learnable mask token
(``bool_masked_pos``); this head decodes every patch token with a 1x1 convolution to
``patch_size**2 * channels`` values and a PixelShuffle back to image resolution. The loss is the mean
error over masked pixels and channels (:class:`~mtl_hf.heads.reconstruction.ReconstructionHead`); with
``norm_target`` the target is each patch normalised by its own mean and standard deviation per channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..masking import random_block_mask
from .base import HEADS, BackboneFeatures, BackboneSpec
from .reconstruction import ReconstructionHead, ReconstructionOptions


@dataclass
class MaskedImageModelingOptions(ReconstructionOptions):
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

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1], got {self.mask_ratio}")
        if self.mask_patch_size < 1:
            raise ValueError(f"mask_patch_size must be positive, got {self.mask_patch_size}")


@HEADS.register("mim")
class MaskedImageModelingHead(ReconstructionHead):
    """Masked image modeling on the masked view; needs no labels. ``reconstruction``: ``(B, C, H, W)``."""

    Options = MaskedImageModelingOptions
    options: MaskedImageModelingOptions
    view = "masked"
    normalize_per_channel = True

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
        """SimMIM block masks (:func:`mtl_hf.masking.random_block_mask`)."""
        return random_block_mask(
            batch_size,
            grid_size,
            self.backbone.patch_size,
            self.options.mask_patch_size,
            self.options.mask_ratio,
            device=device,
            generator=generator,
        )

    def reconstruct(self, features: BackboneFeatures) -> torch.Tensor:
        return self.decoder(features.patch_map())
