"""MAE-style masked image modeling (He et al. 2022, arXiv:2111.06377): a cheaper reconstruction task.

The encoder sees only the visible patches (the model's ``"visible"`` view: prefix tokens plus the
patches that ``bool_masked_pos`` leaves visible); this head's light decoder gets the encoded visible
tokens back at their grid positions, fills the masked positions with a learnable mask token, adds
fixed 2-D sine-cosine position embeddings, runs ``decoder_depth`` pre-norm transformer blocks
(``torch.nn.TransformerEncoderLayer``) and predicts every patch's pixels with a linear layer.

At MAE's 75 % masking the encoder pass costs about a quarter of a full one, so multi-task training
(a full clean pass for the classifiers plus this pass) costs about 1.3 times a classification step
instead of SimMIM's 2 times (``benchmarks/`` measures it).

Loss, with ``M`` the patch mask (1 on masked patches), ``x_i`` patch ``i`` of the normalised input
flattened to ``p * p * C`` values and ``r_i`` its prediction::

    loss = sum_i M_i * mean(err(r_i, x_i)) / max(1, sum_i M_i)     err = (r - x)**2 (mse) | |r - x| (l1)

i.e. the mean error over the pixels and channels of masked patches only (the same quantity as the
``mim`` head's loss for the same mask). With ``norm_target`` each target patch is normalised by the
mean and standard deviation of its ``p * p * C`` values (MAE's ``norm_pix_loss``).

Masks: ``round(mask_ratio * N)`` of the ``N`` patches, uniformly at random per sample (MAE's per-sample
shuffle), drawn from torch's global RNG or a given generator, like the ``mim`` head's block masks.
A ``bool_masked_pos`` passed to the model must hide the same number of patches in every sample.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from transformers import initialization as init

from ..masking import pixel_mask
from .base import HEADS, BackboneFeatures, BackboneSpec, HeadOptions, HeadOutput, TaskHead


@dataclass
class MaskedAutoencoderOptions(HeadOptions):
    """Options of ``mae``.

    Attributes:
        mask_ratio: Share of patches hidden per image, in (0, 1) (default 0.75, MAE's).
        decoder_dim: Width of the decoder, a multiple of 4 (default 128; MAE uses 512 for ViT-L).
        decoder_depth: Decoder transformer blocks, at least 1 (default 2).
        decoder_heads: Attention heads of the decoder; must divide ``decoder_dim`` (default 4).
        loss: ``"mse"`` (default, MAE's) or ``"l1"``.
        norm_target: Normalise each target patch by its own mean and standard deviation (MAE's
            ``norm_pix_loss``, which the MAE paper found to help fine-tuning); default False, so
            reconstructions are in the input's intensity space like the ``mim`` head's.
    """

    mask_ratio: float = 0.75
    decoder_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    loss: Literal["mse", "l1"] = "mse"
    norm_target: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.decoder_dim < 4 or self.decoder_dim % 4:
            raise ValueError(
                f"decoder_dim must be a positive multiple of 4 (2-D sine-cosine positions), got {self.decoder_dim}"
            )
        if self.decoder_depth < 1:
            raise ValueError(f"decoder_depth must be at least 1, got {self.decoder_depth}")
        if self.decoder_heads < 1 or self.decoder_dim % self.decoder_heads:
            raise ValueError(
                f"decoder_heads must be positive and divide decoder_dim {self.decoder_dim}, "
                f"got {self.decoder_heads}"
            )


@HEADS.register("mae")
class MaskedAutoencoderHead(TaskHead):
    """MAE reconstruction on the visible view; needs no labels. ``reconstruction``: ``(B, C, H, W)``
    with every patch predicted (visible ones too, as MAE's decoder does; only masked ones are scored)."""

    Options = MaskedAutoencoderOptions
    options: MaskedAutoencoderOptions
    view = "visible"
    requires_labels = False

    def __init__(self, task_name: str, options: MaskedAutoencoderOptions, backbone: BackboneSpec) -> None:
        super().__init__(task_name, options, backbone)
        d = options.decoder_dim
        p, c = backbone.patch_size, backbone.num_channels
        self.decoder_embed = nn.Linear(backbone.hidden_size, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d,
                options.decoder_heads,
                dim_feedforward=4 * d,
                dropout=0.0,
                activation="gelu",
                layer_norm_eps=1e-6,
                batch_first=True,
                norm_first=True,
            )
            for _ in range(options.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(d, eps=1e-6)
        self.decoder_pred = nn.Linear(d, p * p * c)

    def init_parameters(self) -> None:
        """MAE's scheme for what the model's generic one misses: mask token ~ N(0, 0.02), attention
        input projections Xavier-uniform with zero bias."""
        init.normal_(self.mask_token, std=0.02)
        for block in self.blocks:
            attention: Any = block.self_attn
            init.xavier_uniform_(attention.in_proj_weight)
            init.zeros_(attention.in_proj_bias)

    def sample_mask(
        self,
        batch_size: int,
        grid_size: tuple[int, int],
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return random_patch_mask(batch_size, grid_size, self.options.mask_ratio, device, generator)

    def forward(self, features: BackboneFeatures, labels: torch.Tensor | None = None) -> HeadOutput:
        if features.bool_masked_pos is None or features.visible_indices is None:
            raise ValueError(f"task {self.task_name!r} (mae) needs the visible view (bool_masked_pos)")
        mask = features.bool_masked_pos
        batch, num_patches = mask.shape
        prefix = features.num_prefix_tokens
        tokens = self.decoder_embed(features.last_hidden_state)
        d = tokens.shape[-1]
        index = features.visible_indices.unsqueeze(-1).expand(-1, -1, d)
        grid_tokens = (
            self.mask_token.to(tokens.dtype)
            .expand(batch, num_patches, d)
            .scatter(1, index, tokens[:, prefix:])
        )
        position = sincos_position_embedding(features.grid_size, d, tokens.device, tokens.dtype)
        x = torch.cat([tokens[:, :prefix], grid_tokens + position], dim=1)
        for block in self.blocks:
            x = block(x)
        prediction = self.decoder_pred(self.decoder_norm(x))[:, prefix:]  # (B, N, p*p*C)

        p = self.backbone.patch_size
        target = patchify(features.pixel_values, p).float()
        if self.options.norm_target:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True, unbiased=False)
            target = (target - mean) / (var + 1e-6).sqrt()
        diff = prediction.float() - target
        per_patch = (diff.square() if self.options.loss == "mse" else diff.abs()).mean(dim=-1)
        weight = mask.to(per_patch.dtype)
        loss = (per_patch * weight).sum() / weight.sum().clamp_min(1.0)
        reconstruction = unpatchify(prediction, p, features.grid_size, features.pixel_values.shape[1])
        return HeadOutput(loss=loss, reconstruction=reconstruction)

    def pixel_mask(self, bool_masked_pos: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
        """``(B, 1, H, W)`` float mask, 1 on pixels of masked patches (as the ``mim`` head's, for
        evaluation code that scores reconstructions over masked pixels)."""
        return pixel_mask(bool_masked_pos, grid_size, self.backbone.patch_size)


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


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, N, p * p * C)``, patches in row-major grid order, values ``(p, p, C)``."""
    b, c, h, w = images.shape
    p = patch_size
    x = images.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(
    patches: torch.Tensor, patch_size: int, grid_size: tuple[int, int], channels: int
) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(B, N, p * p * C)`` -> ``(B, C, H, W)``."""
    b = patches.shape[0]
    p = patch_size
    h, w = grid_size
    x = patches.reshape(b, h, w, p, p, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, channels, h * p, w * p)


@functools.lru_cache(maxsize=32)
def sincos_position_embedding(
    grid_size: tuple[int, int], dim: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """``(1, h * w, dim)`` fixed 2-D sine-cosine embeddings (MAE's decoder): half the channels encode
    the row, half the column, each as sines then cosines of ``dim / 4`` frequencies ``10000**(-k/(dim/4))``.
    Computed for any grid, so the head works at any input size, and cached per grid, width, device and
    dtype (callers must not modify the result in place). ``dim`` must be a multiple of 4."""
    if dim % 4:
        raise ValueError(f"decoder_dim must be a multiple of 4 for 2-D sine-cosine positions, got {dim}")
    h, w = grid_size
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64, device=device) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=torch.float64, device=device),
        torch.arange(w, dtype=torch.float64, device=device),
        indexing="ij",
    )
    parts = []
    for coord in (rows.reshape(-1), cols.reshape(-1)):
        angles = coord[:, None] * omega[None, :]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).unsqueeze(0).to(dtype)
