"""The ``mae`` head and the model's visible view: losses by hand, token counts, equivalences, saving."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel

from mtl_hf import MTLModel
from mtl_hf.heads.mae import sincos_position_embedding
from mtl_hf.masking import random_patch_mask
from tests.conftest import tiny_config

MAE = {"type": "mae", "decoder_dim": 32, "decoder_depth": 2, "decoder_heads": 2}
TASKS = {"tumour": {"type": "binary_classification"}, "mae": MAE}


def mae_model(model_type: str = "vit", **mae_options: object) -> MTLModel:
    tasks = {"tumour": {"type": "binary_classification"}, "mae": {**MAE, **mae_options}}
    if model_type == "vit":
        return MTLModel(tiny_config(tasks=tasks))
    backbone = {"patch_size": 14, "image_size": 56}
    if model_type == "dinov2_with_registers":
        backbone["num_register_tokens"] = 2
    return MTLModel(tiny_config(model_type, tasks=tasks, backbone=backbone))


def pixel_mask(mask: torch.Tensor, grid: int, patch: int) -> torch.Tensor:
    m = mask.reshape(-1, grid, grid).repeat_interleave(patch, 1).repeat_interleave(patch, 2)
    return m.unsqueeze(1).float()


def tokens_seen_by_first_layer(model: MTLModel) -> list[int]:
    seen: list[int] = []
    layers = model.backbone.layers if hasattr(model.backbone, "layers") else model.backbone.encoder.layer
    layers[0].register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[1]))
    return seen


# -- the loss ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mse", "l1"])
def test_loss_is_the_mean_error_over_masked_pixels_only(kind: str) -> None:
    model = mae_model(loss=kind).eval()
    x = torch.randn(3, 3, 64, 64)
    mask = random_patch_mask(3, (4, 4), 0.75)
    out = model(x, bool_masked_pos=mask, tasks=["mae"])
    r = out.reconstructions["mae"]
    m = pixel_mask(mask, 4, 16)
    err = (r - x).square() if kind == "mse" else (r - x).abs()
    expected = (err * m).sum() / (m.sum() * 3)
    torch.testing.assert_close(out.task_losses["mae"], expected, rtol=1e-5, atol=1e-6)
    assert float(m.mean()) == pytest.approx(12 / 16)
    assert torch.equal(model.head("mae").pixel_mask(mask, (4, 4)), m)


def test_norm_target_normalises_each_patch_over_its_pixels_and_channels() -> None:
    model = mae_model(norm_target=True).eval()
    x = torch.randn(2, 3, 64, 64) * 3 + 1
    mask = random_patch_mask(2, (4, 4), 0.5)
    out = model(x, bool_masked_pos=mask, tasks=["mae"])
    r = out.reconstructions["mae"]
    total, count = 0.0, 0
    for b in range(2):
        for i in range(4):
            for j in range(4):
                if not mask[b, i * 4 + j]:
                    continue
                patch = x[b, :, i * 16 : (i + 1) * 16, j * 16 : (j + 1) * 16].double()
                target = (patch - patch.mean()) / (patch.var(unbiased=False) + 1e-6).sqrt()
                pred = r[b, :, i * 16 : (i + 1) * 16, j * 16 : (j + 1) * 16].double()
                total += float((pred - target).square().mean().detach())
                count += 1
    assert out.task_losses["mae"].item() == pytest.approx(total / count, rel=1e-5)


# -- what the encoder sees ---------------------------------------------------------------------------
def test_encoder_runs_on_cls_plus_visible_tokens_only() -> None:
    model = mae_model().train()
    seen = tokens_seen_by_first_layer(model)
    out = model(torch.randn(4, 3, 64, 64), labels={"tumour": torch.tensor([0, 1, 0, 1])})
    # One full clean pass for the classifier (1 + 16 tokens), one visible pass (1 + 16 - 12).
    assert sorted(seen) == [1 + 4, 1 + 16]
    assert out.bool_masked_pos.sum(dim=1).tolist() == [12, 12, 12, 12]
    assert set(out.task_losses) == {"tumour", "mae"}


@pytest.mark.parametrize("model_type", ["dinov2", "dinov2_with_registers"])
def test_dinov2_backbones_serve_the_visible_view(model_type: str) -> None:
    model = mae_model(model_type, mask_ratio=0.5).train()
    seen = tokens_seen_by_first_layer(model)
    out = model(torch.randn(2, 3, 56, 56), tasks=["mae"])
    prefix = 1 + (2 if model_type == "dinov2_with_registers" else 0)
    assert seen == [prefix + 8]  # 16 patches, 8 masked
    assert out.reconstructions["mae"].shape == (2, 3, 56, 56)
    assert torch.isfinite(out.loss)


def test_visible_pass_equals_a_full_pass_whose_attention_skips_masked_tokens() -> None:
    """Independent reference: transformers' own ViT forward over every token, with an attention mask
    that hides the masked patches, gives the visible tokens the same values (layer norm and MLP act
    per token, and attention then reads only CLS and visible tokens)."""
    model = mae_model().eval()
    x = torch.randn(3, 3, 64, 64)
    mask = random_patch_mask(3, (4, 4), 0.75)
    features = model._encode_visible(x, mask, output_hidden_states=False)
    attention_mask = torch.cat([torch.ones(3, 1), (~mask).float()], dim=1)
    full = model.backbone(pixel_values=x, attention_mask=attention_mask).last_hidden_state
    reference = torch.stack([torch.cat([full[b, :1], full[b, 1:][~mask[b]]]) for b in range(3)])
    torch.testing.assert_close(features.last_hidden_state, reference, rtol=1e-5, atol=1e-5)
    assert features.visible_indices.tolist() == [torch.nonzero(~m).flatten().tolist() for m in mask]


def test_masked_pixels_cannot_influence_the_reconstruction() -> None:
    model = mae_model().eval()
    x = torch.randn(2, 3, 64, 64)
    mask = random_patch_mask(2, (4, 4), 0.75)
    spoiled = x + 10 * pixel_mask(mask, 4, 16) * torch.randn_like(x)
    a = model(x, bool_masked_pos=mask, tasks=["mae"]).reconstructions["mae"]
    b = model(spoiled, bool_masked_pos=mask, tasks=["mae"]).reconstructions["mae"]
    torch.testing.assert_close(a, b)


def test_gradients_reach_the_backbone_at_visible_positions_only() -> None:
    model = mae_model().train()
    mask = random_patch_mask(1, (4, 4), 0.75)
    out = model(torch.randn(1, 3, 64, 64), bool_masked_pos=mask, tasks=["mae"])
    out.loss.backward()
    embeddings = model.backbone.embeddings
    assert embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0
    for layer in model.backbone.layers:
        assert layer.mlp.fc1.weight.grad.abs().sum() > 0
    position_grad = embeddings.position_embeddings.grad[0, 1:].abs().sum(dim=1)
    assert (position_grad[mask[0]] == 0).all() and (position_grad[~mask[0]] > 0).all()
    assert embeddings.mask_token.grad is None  # the visible view never uses the backbone's mask token
    assert model.head("mae").mask_token.grad.abs().sum() > 0


# -- masks ---------------------------------------------------------------------------------------------
def test_masks_hide_exactly_the_ratio_per_sample_and_follow_the_global_seed() -> None:
    torch.manual_seed(3)
    a = random_patch_mask(64, (14, 14), 0.75)
    torch.manual_seed(3)
    b = random_patch_mask(64, (14, 14), 0.75)
    assert torch.equal(a, b)
    assert a.sum(dim=1).tolist() == [147] * 64  # round(0.75 * 196), MAE's 49 visible patches
    assert len({tuple(row.tolist()) for row in a}) == 64
    # Every position is masked about 75 % of the time.
    many = random_patch_mask(4000, (4, 4), 0.75).float().mean(dim=0)
    assert ((many - 0.75).abs() < 0.05).all()


def test_masks_with_unequal_visible_counts_are_refused() -> None:
    model = mae_model().eval()
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, :12] = True
    mask[1, :10] = True
    with pytest.raises(ValueError, match="same positive number of visible patches"):
        model(torch.randn(2, 3, 64, 64), bool_masked_pos=mask, tasks=["mae"])


def test_eval_mode_runs_mae_only_when_asked() -> None:
    model = mae_model().eval()
    seen = tokens_seen_by_first_layer(model)
    out = model(torch.randn(2, 3, 64, 64))
    assert seen == [17] and out.reconstructions is None and out.bool_masked_pos is None
    mask = random_patch_mask(2, (4, 4), 0.75)
    out = model(torch.randn(2, 3, 64, 64), bool_masked_pos=mask)
    assert set(out.reconstructions) == {"mae"} and torch.equal(out.bool_masked_pos, mask)


# -- options, positions -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mask_ratio": 1.0}, "tasks.mae.*mask_ratio"),
        ({"decoder_heads": 3}, "tasks.mae.*decoder_heads"),
        ({"decoder_dim": 30, "decoder_heads": 2}, "tasks.mae.*multiple of 4"),
        ({"decoder_depth": 0}, "tasks.mae.*decoder_depth"),
        ({"decoder_width": 8}, "tasks.mae.decoder_width: unknown key"),
    ],
)
def test_bad_options_name_the_key(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_config(tasks={"mae": {"type": "mae", **options}})


def test_config_defaults_are_maes() -> None:
    assert tiny_config(tasks={"mae": {"type": "mae"}}).resolved_tasks["mae"] == {
        "type": "mae",
        "mask_ratio": 0.75,
        "decoder_dim": 128,
        "decoder_depth": 2,
        "decoder_heads": 4,
        "loss": "mse",
        "norm_target": False,
    }


def test_sincos_positions_match_maes_numpy_formula() -> None:
    def mae_1d(dim: int, pos: np.ndarray) -> np.ndarray:  # MAE's get_1d_sincos_pos_embed_from_grid
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    h, w, dim = 3, 5, 16
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    expected = np.concatenate([mae_1d(dim // 2, rows), mae_1d(dim // 2, cols)], axis=1)
    got = sincos_position_embedding((h, w), dim, torch.device("cpu"), torch.float64)[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert math.isclose(got[0, 0], 0.0) and math.isclose(got[0, dim // 4], 1.0)


# -- saving -----------------------------------------------------------------------------------------------------
def test_save_and_reload_through_automodel(tmp_path: Path) -> None:
    model = mae_model().eval()
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, MTLModel) and reloaded.config.tasks["mae"]["decoder_dim"] == 32
    x = torch.randn(2, 3, 64, 64)
    mask = random_patch_mask(2, (4, 4), 0.75)
    a = model(x, bool_masked_pos=mask, labels={"tumour": torch.tensor([0, 1])})
    b = reloaded(x, bool_masked_pos=mask, labels={"tumour": torch.tensor([0, 1])})
    assert torch.equal(a.reconstructions["mae"], b.reconstructions["mae"])
    assert torch.equal(a.task_losses["mae"], b.task_losses["mae"])
    # Same weights; the linear layer's summation order may differ with the tensors' memory alignment.
    torch.testing.assert_close(a.logits["tumour"], b.logits["tumour"], rtol=0, atol=1e-6)
