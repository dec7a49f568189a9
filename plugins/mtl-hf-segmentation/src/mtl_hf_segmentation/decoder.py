"""A UNETR-style progressive-upsampling decoder over several ViT layers (Hatamizadeh et al. 2022,
arXiv:2103.10504), for 2-D images.

The patch maps of ``n`` encoder layers (deepest first, each ``(B, D, h, w)`` at the patch grid) are
fused from deep to shallow while the resolution doubles at each stage::

    x = lateral_0(deepest)                                        (B, C_0, h, w)
    for i in 1 .. n-1:
        x = fuse_i( [up_i(x), resize(lateral_i(layer_i), x)] )    (B, C_i, h * 2^i, w * 2^i)
    x = resize(x, H, W);  x = final( [x, stem(image)] )           (B, C_{n-1}, H, W)
    logits = out(x)                                               (B, H, W)

``lateral`` are 1x1 convolutions, ``up`` 2x2 transposed convolutions with stride 2, ``fuse`` and
``final`` 3x3 convolution blocks (conv, group norm, ReLU). The image stem (two 3x3 blocks on the input
pixels, as UNETR's first skip) gives the last stage full-resolution edges that patch tokens lack. The
final bilinear resize makes any patch size work (14 for DINOv2, 16 for DINO ViT).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution, group norm (up to 8 groups) and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.GroupNorm(math.gcd(8, out_channels), out_channels),
        nn.ReLU(inplace=True),
    )


class ProgressiveDecoder(nn.Module):
    """Fuse ``len(channels)`` ViT layers into per-pixel logits.

    Args:
        hidden_size: Width ``D`` of the backbone's tokens.
        channels: Channels of each stage, deepest first; one stage per layer used.
        image_channels: Channels of the input image, for the image stem.
        image_skip_channels: Width of the image stem; 0 leaves it out.
    """

    def __init__(
        self, hidden_size: int, channels: Sequence[int], image_channels: int, image_skip_channels: int
    ) -> None:
        super().__init__()
        channels = list(channels)
        self.lateral = nn.ModuleList(nn.Conv2d(hidden_size, c, kernel_size=1) for c in channels)
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(c_in, c_out, kernel_size=2, stride=2)
            for c_in, c_out in itertools.pairwise(channels)
        )
        self.fuse = nn.ModuleList(conv_block(2 * c, c) for c in channels[1:])
        self.stem = (
            nn.Sequential(
                conv_block(image_channels, image_skip_channels),
                conv_block(image_skip_channels, image_skip_channels),
            )
            if image_skip_channels
            else None
        )
        self.final = conv_block(channels[-1] + image_skip_channels, channels[-1])
        self.out = nn.Conv2d(channels[-1], 1, kernel_size=1)

    def forward(self, maps: Sequence[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        """``maps``: ``(B, D, h, w)`` per layer, deepest first; ``image``: ``(B, C, H, W)``. Returns ``(B, H, W)``."""
        x = self.lateral[0](maps[0])
        for lateral, up, fuse, layer in zip(self.lateral[1:], self.up, self.fuse, maps[1:], strict=True):
            x = up(x)
            x = fuse(torch.cat([x, _resize(lateral(layer), x.shape[-2:])], dim=1))
        x = _resize(x, image.shape[-2:])
        if self.stem is not None:
            x = torch.cat([x, self.stem(image)], dim=1)
        return self.out(self.final(x))[:, 0]


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
