"""Attention maps: CLS-to-patch extraction, DINO's mass threshold, upsampling, and real tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_hf import MTLModel
from mtl_hf.explain import attention_maps, cls_attention, mass_threshold, upsample_map
from tests.conftest import tiny_config
from tests.explain.forced_model import GRID, TOKENS, bright_image, expected_last_layer, forced_attention_model
from tests.explain.test_rollout import numpy_rollout


def test_cls_attention_skips_prefix_tokens() -> None:
    prefix, h, w = 5, 2, 3
    t = prefix + h * w
    att = torch.zeros(1, 2, t, t)
    att[0, 0, 0, prefix:] = torch.arange(6.0)  # head 0: patch j gets j
    att[0, 1, 0, prefix + 4] = 1.0  # head 1: all on patch (1, 1)
    att[0, :, 1, prefix:] = 99.0  # another query row: must not leak in
    out = cls_attention(att, prefix, (h, w))
    assert out.shape == (1, 2, 2, 3)
    assert out[0, 0].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert out[0, 1, 1, 1] == 1.0 and out[0, 1].sum() == 1.0
    with pytest.raises(ValueError, match="5 prefix tokens \\+ a 3x3 grid make 14"):
        cls_attention(att, prefix, (3, 3))


def test_mass_threshold_by_hand() -> None:
    m = torch.tensor([[0.1, 0.5], [0.1, 0.3]])
    assert mass_threshold(m, 0.5).tolist() == [[False, True], [False, False]]
    assert mass_threshold(m, 0.6).tolist() == [[False, True], [False, True]]
    assert mass_threshold(m, 0.8).tolist() == [[False, True], [False, True]]
    assert mass_threshold(m, 0.81).sum() == 3
    assert mass_threshold(m * 7, 0.6).tolist() == [[False, True], [False, True]]  # unnormalised input
    with pytest.raises(ValueError, match="mass must be in"):
        mass_threshold(m, 0.0)


def dino_threshold(attentions: torch.Tensor, threshold: float) -> torch.Tensor:
    """DINO's visualize_attention.py (facebookresearch/dino), for (heads, N) maps."""
    val, idx = torch.sort(attentions)
    val /= torch.sum(val, dim=1, keepdim=True)
    cumval = torch.cumsum(val, dim=1)
    th_attn = cumval > (1 - threshold)
    idx2 = torch.argsort(idx)
    for head in range(attentions.shape[0]):
        th_attn[head] = th_attn[head][idx2[head]]
    return th_attn


@pytest.mark.parametrize("mass", [0.3, 0.6, 0.9])
def test_mass_threshold_equals_dinos_code(mass: float) -> None:
    maps = torch.rand(6, 5, 7, generator=torch.Generator().manual_seed(0))
    expected = dino_threshold(maps.flatten(1).clone(), mass).reshape(6, 5, 7)
    assert torch.equal(mass_threshold(maps, mass), expected)


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bicubic"])
def test_upsampled_maps_have_the_image_size_and_sum_to_one(mode: str) -> None:
    maps = torch.rand(2, 3, 4, 5)
    maps = maps / maps.sum(dim=(-2, -1), keepdim=True)
    up = upsample_map(maps, (64, 80), mode)  # type: ignore[arg-type]
    assert up.shape == (2, 3, 64, 80)
    torch.testing.assert_close(up.sum(dim=(-2, -1)), torch.ones(2, 3))
    assert (up >= 0).all()
    if mode == "nearest":  # each cell's mass spread evenly over its 16x16 pixels
        torch.testing.assert_close(up[..., :16, 16:32].sum(dim=(-2, -1)), maps[..., 0, 1])


@pytest.mark.parametrize(("model_type", "registers"), [("vit", 0), ("dinov2_with_registers", 4)])
def test_maps_of_a_real_model_match_its_attentions(model_type: str, registers: int) -> None:
    backbone = {"num_register_tokens": registers} if registers else {}
    model = MTLModel(tiny_config(model_type, backbone=backbone)).train()
    x = torch.randn(2, 3, 64, 64)
    maps = attention_maps(model, x)
    assert model.training and model.backbone.config._attn_implementation == "sdpa"  # both restored
    prefix = 1 + registers
    assert model.num_prefix_tokens == prefix
    with torch.no_grad():
        att = model.eval()(x, tasks=[], output_attentions=True).attentions
    last = att[-1].double().numpy()  # (B, heads, T, T)
    assert maps.heads.shape == (2, 2, 4, 4) and maps.mean.shape == (2, 4, 4) and maps.rollout is not None
    row = last[:, :, 0, prefix:]
    np.testing.assert_allclose(maps.heads.flatten(2).numpy(), row / row.sum(-1, keepdims=True), rtol=1e-5)
    mean_row = row.mean(1)
    np.testing.assert_allclose(
        maps.mean.flatten(1).numpy(), mean_row / mean_row.sum(-1, keepdims=True), rtol=1e-5
    )
    rolled = numpy_rollout([a.double().numpy() for a in att], 0.5, "mean")[:, 0, prefix:]
    np.testing.assert_allclose(
        maps.rollout.flatten(1).numpy(), rolled / rolled.sum(-1, keepdims=True), rtol=1e-5
    )
    for m in (maps.mean, maps.rollout, maps.heads):
        torch.testing.assert_close(m.sum(dim=(-2, -1)), torch.ones(m.shape[:-2]))
    up = maps.upsampled("rollout")
    assert up.shape == (2, 64, 64)
    torch.testing.assert_close(up.sum(dim=(-2, -1)), torch.ones(2))


def test_forced_model_attends_to_the_chosen_patches() -> None:
    bright = [(0, 1), (2, 3), (3, 3)]
    model = forced_attention_model()
    maps = attention_maps(model, bright_image(bright)[None])
    expected = torch.zeros(GRID, GRID)
    for r, c in bright:
        expected[r, c] = 1 / 3
    torch.testing.assert_close(maps.mean[0], expected, atol=1e-7, rtol=0)
    for h in range(2):
        torch.testing.assert_close(maps.heads[0, h], expected, atol=1e-7, rtol=0)
    # Rollout by hand: layer 0 is uniform, layer 1 is known (see forced_model).
    eye = np.eye(TOKENS)
    a1 = 0.5 * np.full((TOKENS, TOKENS), 1 / TOKENS) + 0.5 * eye
    a2 = 0.5 * expected_last_layer(bright).numpy() + 0.5 * eye
    row = (a2 @ a1)[0, 1:]
    assert maps.rollout is not None
    np.testing.assert_allclose(maps.rollout[0].flatten().numpy(), row / row.sum(), rtol=1e-5)
    assert mass_threshold(maps.mean, 0.6)[0].nonzero().tolist() == [[0, 1], [2, 3]]  # two of three hold 2/3


def test_batched_maps_equal_one_pass() -> None:
    model = MTLModel(tiny_config())
    x = torch.randn(5, 3, 64, 64)
    whole, parts = attention_maps(model, x), attention_maps(model, x, batch_size=2)
    for kind in ("heads", "mean", "rollout"):
        torch.testing.assert_close(getattr(parts, kind), getattr(whole, kind))
