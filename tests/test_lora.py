"""LoRA on the backbone: which parameters train, a fresh adapter changes nothing, training moves only
the adapter and the heads, save/load round trip, merging, and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModel, ViTConfig, ViTModel

from mtl_hf import MTLConfig, MTLModel
from mtl_hf.lora import adapter_state_dict, merged_model, trainable_parameters
from mtl_hf.options import OptionsError, from_dict
from tests.conftest import tiny_backbone

pytest.importorskip("peft")

LORA = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
TASKS = {"tumour": {"type": "binary_classification"}, "mim": {"type": "mim"}}


def lora_model(**lora: object) -> MTLModel:
    return MTLModel(MTLConfig(backbone_config=tiny_backbone(), tasks=TASKS, lora={**LORA, **lora}))


def train_a_few_steps(model: MTLModel, steps: int = 3) -> MTLModel:
    """AdamW steps on a fixed batch of 64 px images: adapters and heads move, the base must not."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x, labels = torch.randn(4, 3, 64, 64), {"tumour": torch.tensor([0.0, 1.0, 1.0, 0.0])}
    for _ in range(steps):
        model(x, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model


def test_only_adapters_mask_token_and_heads_train() -> None:
    model = lora_model()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    backbone = {n for n in trainable if n.startswith("backbone.")}
    assert backbone == {"backbone.embeddings.mask_token"} | {
        f"backbone.layers.{i}.attention.{m}.lora_{ab}.default.weight"
        for i in range(2)
        for m in ("q_proj", "v_proj")
        for ab in "AB"
    }
    heads = {n for n, _ in model.named_parameters() if n.startswith("heads.")}
    assert heads and heads <= trainable
    # hidden 32, rank 4: each adapted layer adds A (4 x 32) + B (32 x 4); 2 layers x 2 modules.
    adapter = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert adapter == 2 * 2 * (4 * 32 + 32 * 4)
    count, total = trainable_parameters(model)
    others = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("heads.", "weighter.")))
    assert count == adapter + 32 + others  # + the 32-wide mask token
    assert total - count == sum(p.numel() for n, p in model.backbone.named_parameters()) - adapter - 32


def test_from_backbone_with_a_fresh_adapter_matches_the_backbone(tmp_path: Path) -> None:
    torch.manual_seed(1)
    backbone = ViTModel(
        ViTConfig(**{k: v for k, v in tiny_backbone().items() if k != "model_type"}), add_pooling_layer=False
    )
    backbone.save_pretrained(tmp_path / "vit")
    model = MTLModel.from_backbone(str(tmp_path / "vit"), tasks=TASKS, lora=LORA).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = model(x, tasks=[]).last_hidden_state
        reference = backbone.eval()(x).last_hidden_state
    torch.testing.assert_close(ours, reference)  # B = 0: the adapter adds nothing yet


def test_training_save_load_and_merge(tmp_path: Path) -> None:
    model = lora_model()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    adapter_before = {k: v.clone() for k, v in adapter_state_dict(model).items()}
    train_a_few_steps(model)
    x = torch.randn(4, 3, 64, 64)
    for name, before in frozen.items():
        assert torch.equal(dict(model.named_parameters())[name], before), name
    after = adapter_state_dict(model)
    assert any(not torch.equal(after[k], adapter_before[k]) for k in after if "lora_B" in k)

    model.save_pretrained(tmp_path / "lora")
    loaded = AutoModel.from_pretrained(tmp_path / "lora")
    assert loaded.config.lora == LORA  # stored as given
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert {n for n, p in loaded.named_parameters() if p.requires_grad} == {
        n for n, p in model.named_parameters() if p.requires_grad
    }
    model.eval()
    merged = merged_model(model)
    assert merged.config.lora is None and not any("lora_" in k for k in merged.state_dict())
    with torch.no_grad():
        expected = model(x).logits["tumour"]
        torch.testing.assert_close(merged.eval()(x).logits["tumour"], expected, atol=1e-5, rtol=1e-5)
    merged.save_pretrained(tmp_path / "merged")
    reloaded = AutoModel.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x).logits["tumour"], expected, atol=1e-5, rtol=1e-5)


def test_bad_lora_options_name_the_key() -> None:
    with pytest.raises(
        ValueError, match=r"lora.target_modules: no linear layer of the backbone matches \['qkv'\]"
    ):
        lora_model(target_modules=["qkv"])
    with pytest.raises((OptionsError, ValueError), match=r"lora\.r"):
        lora_model(r=0)
    with pytest.raises((OptionsError, ValueError), match=r"lora"):
        lora_model(rank=4)


def test_same_seed_gives_the_plain_models_weights() -> None:
    from mtl_hf.lora import base_weight_names

    torch.manual_seed(0)
    plain = MTLModel(MTLConfig(backbone_config=tiny_backbone(), tasks=TASKS))
    torch.manual_seed(0)
    adapted = lora_model()
    own = adapted.state_dict()
    for key, value in base_weight_names(adapted.backbone, plain.backbone.state_dict()).items():
        assert torch.equal(own[f"backbone.{key}"], value), key
    for key, value in plain.heads.state_dict().items():
        assert torch.equal(own[f"heads.{key}"], value), key


def test_run_config_model_lora_reaches_the_model(tmp_path: Path) -> None:
    from mtl_hf.train import build_model
    from mtl_hf.training.config import RunConfig

    raw = {
        "output_dir": str(tmp_path),
        "model": {"backbone_config": tiny_backbone(), "tasks": TASKS, "lora": {"r": 2}},
    }
    model = build_model(from_dict(RunConfig, raw))
    assert model.config.lora == {"r": 2}
    adapted = model.backbone.layers[0].attention  # the defaults: queries and values, alpha 16
    assert adapted.q_proj.r["default"] == 2 and adapted.q_proj.scaling["default"] == 8.0
    assert adapted.v_proj.r["default"] == 2 and not hasattr(adapted.k_proj, "lora_A")
    assert not model.backbone.embeddings.patch_embeddings.projection.weight.requires_grad


def test_model_card_names_the_base_backbone(tmp_path: Path) -> None:
    from mtl_hf import MTLImageProcessor
    from mtl_hf.hub.model_card import render_model_card

    model = lora_model()
    model.config.backbone_config._name_or_path = "facebook/dino-vits16"  # as from_backbone records it
    model.save_pretrained(tmp_path / "lora")
    MTLImageProcessor(size=64).save_pretrained(tmp_path / "lora")
    card = render_model_card(tmp_path / "lora", "lab/brats-lora")
    assert card.data.base_model == "facebook/dino-vits16"
