"""Attention rollout against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_hf.explain import attention_rollout, fuse_heads


def test_three_tokens_two_layers_by_hand() -> None:
    a1 = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]
    a2 = [[0.0, 0.5, 0.5], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    # A'1 = 0.5 A1 + 0.5 I = [[1, 0, 0], [.25, .75, 0], [0, 0, 1]]
    # A'2 = 0.5 A2 + 0.5 I = [[.5, .25, .25], [0, 1, 0], [.5, 0, .5]]
    # R = A'2 A'1:
    expected = [[0.5625, 0.1875, 0.25], [0.25, 0.75, 0.0], [0.5, 0.0, 0.5]]
    stack = [torch.tensor(a)[None, None] for a in (a1, a2)]
    np.testing.assert_allclose(attention_rollout(stack)[0].numpy(), expected, rtol=1e-6)


def numpy_rollout(layers: list[np.ndarray], residual: float, fuse: str) -> np.ndarray:
    """Per sample: fuse heads, add the residual, row-normalise, multiply from the first layer up."""
    b, _, t, _ = layers[0].shape
    out = np.empty((b, t, t))
    for i in range(b):
        joint = np.eye(t)
        for a in layers:
            fused = {"mean": a[i].mean(0), "max": a[i].max(0), "min": a[i].min(0)}[fuse]
            step = (1 - residual) * fused + residual * np.eye(t)
            step = step / step.sum(axis=1, keepdims=True)
            joint = step @ joint
        out[i] = joint
    return out


@pytest.mark.parametrize(("residual", "fuse"), [(0.5, "mean"), (0.0, "mean"), (0.5, "max"), (0.3, "min")])
def test_random_stacks_match_numpy(residual: float, fuse: str) -> None:
    rng = np.random.default_rng(0)
    layers = [rng.dirichlet(np.ones(7), size=(2, 3, 7)) for _ in range(4)]  # (B, heads, T, T), rows sum to 1
    got = attention_rollout([torch.from_numpy(a) for a in layers], residual=residual, head_fusion=fuse)  # type: ignore[arg-type]
    np.testing.assert_allclose(got.numpy(), numpy_rollout(layers, residual, fuse), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.sum(-1).numpy(), 1.0, rtol=1e-5)


def test_residual_zero_is_the_plain_product_and_start_layer_skips() -> None:
    rng = np.random.default_rng(1)
    layers = [rng.dirichlet(np.ones(5), size=(1, 1, 5)) for _ in range(3)]
    t = [torch.from_numpy(a) for a in layers]
    plain = layers[2][0, 0] @ layers[1][0, 0] @ layers[0][0, 0]
    np.testing.assert_allclose(attention_rollout(t, residual=0.0)[0].numpy(), plain, rtol=1e-5)
    np.testing.assert_allclose(
        attention_rollout(t, residual=0.0, start_layer=1)[0].numpy(),
        layers[2][0, 0] @ layers[1][0, 0],
        rtol=1e-5,
    )


def test_bad_arguments() -> None:
    a = torch.full((1, 1, 2, 2), 0.5)
    with pytest.raises(ValueError, match="residual must be in"):
        attention_rollout([a], residual=1.0)
    with pytest.raises(ValueError, match="no attention layers"):
        attention_rollout([a], start_layer=1)
    with pytest.raises(ValueError, match="head_fusion"):
        fuse_heads(a, "median")  # type: ignore[arg-type]
