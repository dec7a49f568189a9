"""Input channels: a pretrained backbone's patch embedding adapted to C channels, and their defaults.

Medical inputs rarely have the three colour channels a DINO / ViT checkpoint was trained on: BraTS
has four MR modalities (T1, T1ce, T2, FLAIR), a CT slice may be given as several Hounsfield windows,
PET/CT as two. :func:`adapt_input_conv` turns the checkpoint's ``(O, I, P, P)`` patch-embedding kernel
into one for ``C`` channels the way timm's ``adapt_input_conv`` (``timm/models/_manipulate.py``) does,
keeping the scale of the embeddings the checkpoint was trained to produce:

* ``C == 1``: the kernel summed over its input channels (a grey image ``g`` gives
  ``sum_i W_i * g``, what the RGB kernel gives for the image ``(g, g, g)``);
* ``C == I``: unchanged;
* otherwise, from a 3-channel kernel: the channels repeated cyclically (``W'_c = W_{c mod 3}``) up to
  ``C`` and scaled by ``3 / C``, so the kernel's total weight keeps its size (exactly, when ``C`` is a
  multiple of 3: ``C`` identical channels then give the response of the original to 3 identical
  channels); for BraTS' four modalities ``W' = 3/4 (W_0, W_1, W_2, W_0)``;
* from a 1-channel kernel (not covered by timm): repeated ``C`` times and scaled by ``1 / C``, by the
  same rule.

The bias is left as it is. The default per-channel normalisation statistics follow the same cycle
(:func:`default_channel_statistics`): channel ``c`` is standardised with the ImageNet mean and standard
deviation of the colour channel whose weights it inherits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Grey images seen by an ImageNet-trained backbone: the mean of the three channels' statistics.
GREY_MEAN = (0.449,)
GREY_STD = (0.226,)

PATCH_EMBEDDING_WEIGHT = "embeddings.patch_embeddings.projection.weight"
"""The patch-embedding kernel in the state dict of transformers' ViT and DINOv2 models."""


def adapt_input_conv(in_chans: int, conv_weight: torch.Tensor) -> torch.Tensor:
    """A copy of ``conv_weight`` ``(O, I, kH, kW)`` adapted to ``in_chans`` input channels (see module doc).

    Raises:
        ValueError: ``in_chans < 1``, a kernel that is not 4-D, or a kernel of ``I`` channels other than
            1 or 3 asked for a different count (no rule says how to spread it).
    """
    if in_chans < 1:
        raise ValueError(f"in_chans must be at least 1, got {in_chans}")
    if conv_weight.ndim != 4:
        raise ValueError(
            f"expected a (O, I, kH, kW) convolution kernel, got shape {tuple(conv_weight.shape)}"
        )
    dtype = conv_weight.dtype
    weight = conv_weight.detach().float()  # half-precision sums are inexact on CPUs
    source = weight.shape[1]
    if in_chans == source:
        adapted = weight.clone()
    elif in_chans == 1:
        adapted = weight.sum(dim=1, keepdim=True)
    elif source in (1, 3):
        repeat = math.ceil(in_chans / source)
        adapted = weight.repeat(1, repeat, 1, 1)[:, :in_chans] * (source / in_chans)
    else:
        raise ValueError(
            f"cannot adapt a patch embedding of {source} input channels to {in_chans}: only 3- and "
            "1-channel kernels are spread over other channel counts"
        )
    return adapted.to(dtype)


def adapt_state_dict_channels(
    state_dict: Mapping[str, torch.Tensor], num_channels: int | None
) -> dict[str, torch.Tensor]:
    """``state_dict`` of a ViT / DINOv2 backbone with its patch embedding adapted to ``num_channels``
    (``None``: unchanged)."""
    adapted = dict(state_dict)
    if num_channels is not None and PATCH_EMBEDDING_WEIGHT in adapted:
        adapted[PATCH_EMBEDDING_WEIGHT] = adapt_input_conv(num_channels, adapted[PATCH_EMBEDDING_WEIGHT])
    return adapted


def default_channel_statistics(num_channels: int) -> tuple[list[float], list[float]]:
    """``(image_mean, image_std)`` for ``num_channels`` inputs of an ImageNet-trained backbone: the grey
    average for 1 channel, ImageNet's for 3, and for other counts ImageNet's repeated cyclically, as
    :func:`adapt_input_conv` repeats the kernel."""
    if num_channels < 1:
        raise ValueError(f"num_channels must be at least 1, got {num_channels}")
    if num_channels == 1:
        return list(GREY_MEAN), list(GREY_STD)
    return (
        [IMAGENET_MEAN[c % 3] for c in range(num_channels)],
        [IMAGENET_STD[c % 3] for c in range(num_channels)],
    )
