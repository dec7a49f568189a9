"""Shared fixtures: tiny backbones so every model test runs in seconds on a CPU."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import mtl_hf


def tiny_backbone(model_type: str = "vit", **overrides: Any) -> dict[str, Any]:
    """A 2-layer, 32-wide backbone config dict of the given kind (64 px, patch 16 by default)."""
    base: dict[str, Any] = {
        "model_type": model_type,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "image_size": 64,
        "patch_size": 16,
        "num_channels": 3,
    }
    if model_type == "vit":
        base["encoder_stride"] = base["patch_size"]
    base.update(overrides)
    if model_type == "vit" and "patch_size" in overrides:
        base.setdefault("encoder_stride", overrides["patch_size"])
        base["encoder_stride"] = overrides.get("encoder_stride", overrides["patch_size"])
    return base


def tiny_config(
    model_type: str = "vit", tasks: dict | None = None, weighting: dict | None = None, **kwargs: Any
):
    backbone_overrides = kwargs.pop("backbone", {})
    return mtl_hf.MTLConfig(
        backbone_config=tiny_backbone(model_type, **backbone_overrides),
        tasks=tasks
        if tasks is not None
        else {"tumour": {"type": "binary_classification"}, "mim": {"type": "mim"}},
        weighting=weighting,
        **kwargs,
    )


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
