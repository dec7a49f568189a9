"""A tiny real ViT whose attention is known by hand, for end-to-end tests of the maps and scores.

64-px images, 16-px patches (a 4x4 grid), hidden size 32, 2 layers, 2 heads of 16 dims. Weights:

* patch embedding: token ``x_j = s_j (e0 - e1)`` with ``s_j`` the patch's mean value; no position
  embeddings; CLS token ``e2 - e3``. Feed images that are +1 on "bright" patches and -1 elsewhere;
* layer 0 is the identity (output projections zero) with uniform attention (queries and keys zero):
  every row of its attention is ``1 / 17``;
* layer 1's layer norm maps CLS to ``4 (e2 - e3)`` and a patch to ``±4 (e0 - e1)``; its query reads
  dim 2 and its key dim 0 into dim 0 of each head, scaled by 5, so CLS scores ``±100`` on bright/dark
  patches and 0 on itself, and all of its attention goes evenly to the bright patches. Patch rows
  have zero queries: uniform ``1 / 17``.
"""

from __future__ import annotations

import torch

from mtl_hf import MTLModel
from tests.conftest import tiny_config

GRID = 4
PATCH = 16
TOKENS = 1 + GRID * GRID


def forced_attention_model(tasks: dict | None = None) -> MTLModel:
    model = MTLModel(
        tiny_config(tasks=tasks or {"tumour": {"type": "binary_classification"}, "mim": {"type": "mim"}})
    )
    bb = model.backbone
    d = 32
    with torch.no_grad():
        for p in bb.parameters():
            p.zero_()
        for layer in bb.layers:
            layer.layernorm_before.weight.fill_(1.0)
            layer.layernorm_after.weight.fill_(1.0)
        bb.layernorm.weight.fill_(1.0)
        w = bb.embeddings.patch_embeddings.projection.weight
        w[0].fill_(1.0 / (3 * PATCH * PATCH))
        w[1].fill_(-1.0 / (3 * PATCH * PATCH))
        bb.embeddings.cls_token[0, 0, 2] = 1.0
        bb.embeddings.cls_token[0, 0, 3] = -1.0
        q, k = bb.layers[1].attention.q_proj.weight, bb.layers[1].attention.k_proj.weight
        for head_start in (0, d // 2):
            q[head_start, 2] = 5.0
            k[head_start, 0] = 5.0
    return model.eval()


def bright_image(bright: list[tuple[int, int]]) -> torch.Tensor:
    """``(3, 64, 64)``: +1 on the listed (row, col) patches, -1 elsewhere."""
    x = -torch.ones(3, GRID * PATCH, GRID * PATCH)
    for r, c in bright:
        x[:, r * PATCH : (r + 1) * PATCH, c * PATCH : (c + 1) * PATCH] = 1.0
    return x


def expected_last_layer(bright: list[tuple[int, int]]) -> torch.Tensor:
    """Layer 1's attention ``(T, T)`` (same for both heads) by hand."""
    a = torch.full((TOKENS, TOKENS), 1.0 / TOKENS, dtype=torch.float64)
    a[0] = 0.0
    for r, c in bright:
        a[0, 1 + r * GRID + c] = 1.0 / len(bright)
    return a
