"""A LoRA adapter folder pushed over real HTTP to the loopback Hub and loaded back from it onto its base."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtl_hf import MTLImageProcessor
from mtl_hf.hub import push_to_hub
from mtl_hf.lora_adapter import load_adapter, save_adapter
from tests.test_lora_adapter import outputs, trained_lora_model

from .conftest import TOKEN
from .hub_server import HubServer

pytest.importorskip("peft")


def test_push_an_adapter_and_load_it_from_the_hub(
    hub: HubServer, tmp_path: Path, no_ambient_token: None
) -> None:
    from transformers import ViTConfig, ViTModel

    from tests.conftest import tiny_backbone

    torch.manual_seed(1)
    config = ViTConfig(**{k: v for k, v in tiny_backbone().items() if k != "model_type"})
    ViTModel(config, add_pooling_layer=False).save_pretrained(tmp_path / "base")
    model = trained_lora_model(tmp_path / "base")
    folder = save_adapter(model, tmp_path / "adapter")
    result = push_to_hub(folder, "lab/tiny-adapter", token=TOKEN, endpoint=hub.url)
    commit = hub.repos["lab/tiny-adapter"].resolve(result.revision)
    assert commit is not None
    uploaded = set(commit.files)
    assert {"adapter_config.json", "adapter_model.safetensors", "heads.safetensors", "README.md"} <= uploaded
    assert "model.safetensors" not in uploaded

    # a full save_pretrained folder pushed with adapter_only=True: the same adapter files, no full weights
    model.save_pretrained(tmp_path / "full")
    MTLImageProcessor(size=64).save_pretrained(tmp_path / "full")
    result = push_to_hub(tmp_path / "full", "lab/from-full", token=TOKEN, endpoint=hub.url, adapter_only=True)
    pushed = hub.repos["lab/from-full"].resolve(result.revision)
    assert pushed is not None and "model.safetensors" not in pushed.files
    assert {"adapter_model.safetensors", "heads.safetensors", "preprocessor_config.json"} <= set(pushed.files)
    assert "LoRA adapter, not full weights" in pushed.files["README.md"].decode()

    x, mask = torch.randn(2, 3, 64, 64), torch.rand(2, 16) < 0.5
    for repo in ("lab/tiny-adapter", "lab/from-full"):
        loaded = load_adapter(repo, endpoint=hub.url, token=TOKEN, cache_dir=str(tmp_path / "cache"))
        for task, value in outputs(loaded, x, mask).items():
            assert torch.equal(value, outputs(model, x, mask)[task]), (repo, task)
