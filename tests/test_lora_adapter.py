"""The adapter-only form of a LoRA model: saved in peft's format with the heads, loaded back onto its
base backbone with identical outputs (by mtl-hf and by peft itself), described as an adapter on its card."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, ViTConfig, ViTModel

from mtl_hf import MTLConfig, MTLImageProcessor, MTLModel
from mtl_hf.hub import render_model_card, resolve_shareable
from mtl_hf.lora_adapter import (
    ADAPTER_WEIGHTS,
    HEADS_WEIGHTS,
    PEFT_PREFIX,
    AdapterError,
    load_adapter,
    save_adapter,
)
from tests.conftest import tiny_backbone
from tests.test_lora import LORA, TASKS, train_a_few_steps

peft = pytest.importorskip("peft")


def trained_lora_model(base: Path) -> MTLModel:
    """A LoRA model on the saved base backbone after a few steps, so adapters and heads moved."""
    torch.manual_seed(0)
    return train_a_few_steps(MTLModel.from_backbone(str(base), tasks=TASKS, lora=LORA)).eval()


@pytest.fixture
def base(tmp_path: Path) -> Path:
    torch.manual_seed(1)
    config = ViTConfig(**{k: v for k, v in tiny_backbone().items() if k != "model_type"})
    ViTModel(config, add_pooling_layer=False).save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def outputs(model: MTLModel, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(x, bool_masked_pos=mask)
    return {"tumour": out.logits["tumour"], "mim": out.reconstructions["mim"]}


def test_adapter_round_trip_gives_identical_outputs(base: Path, tmp_path: Path) -> None:
    model = trained_lora_model(base)
    folder = save_adapter(model, tmp_path / "adapter", processor=MTLImageProcessor(size=64))
    assert sorted(p.name for p in folder.iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", "config.json", "heads.safetensors",
        "preprocessor_config.json",
    ]  # fmt: skip
    adapter = load_file(folder / ADAPTER_WEIGHTS)
    lora_keys = {k for k in model.state_dict() if "lora_" in k}
    assert len(adapter) == len(lora_keys) == 8 and all(k.startswith(PEFT_PREFIX) for k in adapter)
    heads = load_file(folder / HEADS_WEIGHTS)
    assert not any(k.startswith("backbone.") for k in heads if k != "backbone.embeddings.mask_token")
    assert "backbone.embeddings.mask_token" in heads
    assert {k for k in model.state_dict() if not k.startswith("backbone.")} <= set(heads)
    full = tmp_path / "full"
    model.save_pretrained(full)
    saved = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    assert saved < (full / "model.safetensors").stat().st_size / 2  # the frozen base is not in it

    x, mask = torch.randn(3, 3, 64, 64), torch.rand(3, 16) < 0.5
    expected = outputs(model, x, mask)
    for loaded in (load_adapter(folder), AutoModel.from_pretrained(folder)):
        assert isinstance(loaded, MTLModel) and loaded.config.lora == model.config.lora
        for task, value in outputs(loaded, x, mask).items():
            assert torch.equal(value, expected[task]), task
        trainable = {n for n, p in loaded.named_parameters() if p.requires_grad}
        assert trainable == {n for n, p in model.named_parameters() if p.requires_grad}
    reweighted = load_adapter(folder, weighting={"type": "uncertainty"})  # another weighter: outputs kept
    assert type(reweighted.weighter).__name__ == "UncertaintyWeighting"
    for task, value in outputs(reweighted, x, mask).items():
        assert torch.equal(value, expected[task]), task


def test_peft_loads_the_adapter_onto_the_base_itself(base: Path, tmp_path: Path) -> None:
    """The adapter file is peft's own format: PeftModel.from_pretrained on the plain base backbone gives
    the hidden states of our backbone."""
    model = trained_lora_model(base)
    folder = save_adapter(model, tmp_path / "adapter")
    wrapped = peft.PeftModel.from_pretrained(ViTModel.from_pretrained(base, add_pooling_layer=False), folder)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = model(x, tasks=[]).last_hidden_state
        theirs = wrapped.eval()(pixel_values=x).last_hidden_state
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-6)


def test_the_card_says_adapter_and_names_the_base(base: Path, tmp_path: Path) -> None:
    model = trained_lora_model(base)
    local = render_model_card(save_adapter(model, tmp_path / "local"), "lab/tiny-adapter")
    assert "LoRA adapter, not full weights" in str(local) and f"`{base}` (a local checkpoint)" in str(local)
    assert 'load_adapter("lab/tiny-adapter")' in str(local)
    folder = save_adapter(model, tmp_path / "hub", base_model="facebook/dinov2-small")
    assert load_adapter(folder, base_model=str(base)) is not None  # the named base can be overridden
    card = render_model_card(resolve_shareable(folder), "lab/tiny-adapter")
    assert (
        "[facebook/dinov2-small](https://huggingface.co/facebook/dinov2-small), which is not included"
        in str(card)
    )
    assert (
        card.data.base_model == "facebook/dinov2-small"
        and "Initialised from [facebook/dinov2-small]" in str(card)
    )
    assert "rank 4, alpha 8" in str(card) and 'AutoModel.from_pretrained("lab/tiny-adapter")' not in str(card)
    full = tmp_path / "full"
    model.save_pretrained(full)
    assert "LoRA adapter" not in str(render_model_card(full, "lab/tiny-full"))


def test_what_cannot_be_an_adapter(base: Path, tmp_path: Path) -> None:
    plain = MTLModel.from_backbone(str(base), tasks=TASKS)
    with pytest.raises(AdapterError, match="has no LoRA adapter"):
        save_adapter(plain, tmp_path / "x")
    fresh = MTLModel(MTLConfig(backbone_config=tiny_backbone(), tasks=TASKS, lora=LORA))
    with pytest.raises(AdapterError, match="no base backbone is known"):
        save_adapter(fresh, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    folder = save_adapter(trained_lora_model(base), tmp_path / "adapter")
    (folder / HEADS_WEIGHTS).unlink()
    with pytest.raises(AdapterError, match=r"not an adapter folder, missing heads\.safetensors"):
        load_adapter(folder)
