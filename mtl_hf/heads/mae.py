"""MAE-style masked image modeling (He et al. 2022, arXiv:2111.06377): a cheaper reconstruction task.

The encoder sees only the visible patches (the model's ``"visible"`` view: prefix tokens plus the
patches that ``bool_masked_pos`` leaves visible); this head's light decoder gets the encoded visible
tokens back at their grid positions, fills the masked positions with a learnable mask token, adds
fixed 2-D sine-cosine position embeddings, runs ``decoder_depth`` pre-norm transformer blocks
(``torch.nn.TransformerEncoderLayer``) and predicts every patch's pixels with a linear layer.

At MAE's 75 % masking the encoder pass costs about a quarter of a full one, so multi-task training
(a full clean pass for the classifiers plus this pass) costs about 1.3 times a classification step
instead of SimMIM's 2 times (``benchmarks/`` measures it).

Loss: the mean error over the pixels and channels of masked patches only, as for the ``mim`` head
(:class:`~mtl_hf.heads.reconstruction.ReconstructionHead`); since every patch has ``p * p * C`` values,
it is also the mean over masked patches of each patch's mean error. With ``norm_target`` each target
patch is normalised by the mean and standard deviation of its ``p * p * C`` values (MAE's
``norm_pix_loss``).

Masks: ``round(mask_ratio * N)`` of the ``N`` patches, uniformly at random per sample (MAE's per-sample
shuffle), drawn from torch's global RNG or a given generator, like the ``mim`` head's block masks.
A ``bool_masked_pos`` passed to the model must hide the same number of patches in every sample.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import initialization as init

from ..masking import random_patch_mask, unpatchify
from .base import HEADS, BackboneFeatures, BackboneSpec
from .reconstruction import ReconstructionHead, ReconstructionOptions


@dataclass
class MaskedAutoencoderOptions(ReconstructionOptions):
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
class MaskedAutoencoderHead(ReconstructionHead):
    """MAE reconstruction on the visible view; needs no labels. ``reconstruction``: ``(B, C, H, W)``
    with every patch predicted (visible ones too, as MAE's decoder does; only masked ones are scored)."""

    Options = MaskedAutoencoderOptions
    options: MaskedAutoencoderOptions
    view = "visible"
    normalize_per_channel = False

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
        """MAE's masks of single patches (:func:`mtl_hf.masking.random_patch_mask`)."""
        return random_patch_mask(batch_size, grid_size, self.options.mask_ratio, device, generator)

    def reconstruct(self, features: BackboneFeatures) -> torch.Tensor:
        mask = features.bool_masked_pos
        if mask is None or features.visible_indices is None:
            raise ValueError(f"task {self.task_name!r} (mae) needs the visible view (bool_masked_pos)")
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
        channels = features.pixel_values.shape[1]
        return unpatchify(prediction, self.backbone.patch_size, features.grid_size, channels)


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
