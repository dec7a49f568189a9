"""The ``segmentation`` plugin head, installed with pip: loss, metric, gradients, training, provenance."""

from __future__ import annotations

import math
from importlib import metadata

import pytest
import torch
from sklearn.metrics import f1_score
from transformers import AutoModel

from mtl_hf import HEADS, MTLConfig, MTLModel
from mtl_hf.options import OptionsError
from tests.conftest import tiny_backbone

TINY_BACKBONE = tiny_backbone(image_size=32, patch_size=8)
LESION = {"type": "segmentation", "decoder_channels": [16, 8], "image_skip_channels": 8}


@pytest.fixture(autouse=True)
def _plugin(segmentation_plugin: metadata.Distribution) -> None:
    """Every test here runs with the plugin installed."""


def tiny_model(tasks: dict, seed: int = 0) -> MTLModel:
    torch.manual_seed(seed)
    return MTLModel(MTLConfig(backbone_config=dict(TINY_BACKBONE), tasks=tasks))


def squares(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy 32-px images, each with one bright square of side 8-12 px; the square is the lesion mask."""
    g = torch.Generator().manual_seed(seed)
    images = 0.3 * torch.randn(n, 3, 32, 32, generator=g)
    masks = torch.zeros(n, 32, 32, dtype=torch.uint8)
    for i in range(n):
        side = int(torch.randint(8, 13, (1,), generator=g))
        y, x = (int(v) for v in torch.randint(0, 32 - side, (2,), generator=g))
        masks[i, y : y + side, x : x + side] = 1
    return images + 1.5 * masks[:, None].float(), masks


def test_the_head_is_found_by_name_with_its_distribution(segmentation_plugin: metadata.Distribution) -> None:
    from mtl_hf_segmentation import SegmentationHead

    assert HEADS.get("segmentation") is SegmentationHead
    entry = HEADS.source_of("segmentation")
    assert (entry.distribution, entry.version) == ("mtl-hf-segmentation", segmentation_plugin.version)
    assert SegmentationHead.requires_hidden_states


def test_loss_equals_a_hand_computation() -> None:
    from mtl_hf_segmentation import dice_bce_loss

    logits = torch.tensor([[[2.0, -1.0], [0.5, -3.0]], [[-0.5, 0.25], [1.5, -2.0]]])
    masks = torch.tensor([[[1, 0], [1, 1]], [[0, 0], [0, 0]]])

    def sigmoid(z: float) -> float:
        return 1 / (1 + math.exp(-z))

    def hand(dice_weight: float, bce_weight: float, smooth: float, w: float) -> float:
        bce_terms, dices = [], []
        for b in range(2):
            inter = p_sum = g_sum = 0.0
            for i in range(2):
                for j in range(2):
                    p, g = sigmoid(float(logits[b, i, j])), float(masks[b, i, j])
                    bce_terms.append(-(w * g * math.log(p) + (1 - g) * math.log(1 - p)))
                    inter, p_sum, g_sum = inter + p * g, p_sum + p, g_sum + g
            dices.append((2 * inter + smooth) / (p_sum + g_sum + smooth))
        return dice_weight * (1 - sum(dices) / 2) + bce_weight * sum(bce_terms) / 8

    assert float(dice_bce_loss(logits, masks)) == pytest.approx(hand(1.0, 1.0, 1.0, 1.0), rel=1e-6)
    weighted = dice_bce_loss(logits, masks, dice_weight=0.5, bce_weight=2.0, smooth=0.1, pos_weight=3.0)
    assert float(weighted) == pytest.approx(hand(0.5, 2.0, 0.1, 3.0), rel=1e-6)


def test_dice_equals_f1_of_the_thresholded_masks() -> None:
    from mtl_hf_segmentation import dice_per_image, segmentation_metrics

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 6, 7, generator=g)
    masks = (torch.rand(5, 6, 7, generator=g) < 0.3).to(torch.uint8)
    logits[4], masks[4] = -5.0, 0  # nothing predicted, nothing there: a perfect image
    per_image = dice_per_image(logits, masks)
    pred, true = (logits > 0).flatten(1).numpy(), masks.flatten(1).numpy()
    expected = [f1_score(true[i], pred[i], zero_division=1.0) for i in range(5)]
    assert per_image.tolist() == pytest.approx(expected, abs=1e-6)
    assert per_image[4] == 1.0
    metrics = segmentation_metrics(logits, masks)
    assert metrics["dice"] == pytest.approx(sum(expected) / 5, abs=1e-6)
    assert metrics["dice_global"] == pytest.approx(f1_score(true.ravel(), pred.ravel()), abs=1e-6)
    # The threshold is on the probability: 0.8 keeps logits above log(4).
    strict = dice_per_image(logits, masks, threshold=0.8)
    pred_strict = (logits > math.log(4)).flatten(1).numpy()
    assert strict[0] == pytest.approx(f1_score(true[0], pred_strict[0], zero_division=1.0), abs=1e-6)


def test_the_gradient_reaches_the_backbone_through_the_chosen_layers() -> None:
    model = tiny_model(
        {
            "tumour": {"type": "binary_classification"},
            "mim": {"type": "mim", "mask_patch_size": 16},
            "lesion": LESION,
        }
    ).train()
    images, masks = squares(2, seed=0)
    out = model(images, labels={"tumour": torch.tensor([0, 1]), "lesion": masks})
    assert set(out.task_losses) == {"tumour", "mim", "lesion"}
    assert out.logits["lesion"].shape == (2, 32, 32)
    out.task_losses["lesion"].backward()
    for name in (
        "embeddings.patch_embeddings.projection.weight",
        "layers.0.attention.q_proj.weight",
        "layers.1.mlp.fc2.weight",
    ):
        grad = model.backbone.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert model.head("tumour").classifier.weight.grad is None  # only the segmentation loss went back

    shallow = tiny_model({"lesion": {**LESION, "layers": [1], "decoder_channels": [8]}}).train()
    shallow(images, labels={"lesion": masks}).loss.backward()
    assert shallow.backbone.get_parameter("layers.0.mlp.fc2.weight").grad.abs().sum() > 0
    assert shallow.backbone.get_parameter("layers.1.mlp.fc2.weight").grad is None  # layer 2 is not read


def test_a_few_training_steps_improve_dice() -> None:
    from mtl_hf_segmentation import segmentation_metrics

    model = tiny_model({"lesion": LESION})
    train_images, train_masks = squares(16, seed=1)
    test_images, test_masks = squares(8, seed=2)

    def test_dice() -> float:
        model.eval()
        with torch.no_grad():
            logits = model(test_images).logits["lesion"]
        return segmentation_metrics(logits, test_masks)["dice"]

    before = test_dice()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(40):
        optimizer.zero_grad()
        model(train_images, labels={"lesion": train_masks}).loss.backward()
        optimizer.step()
    after = test_dice()
    assert after > before + 0.3 and after > 0.6, (before, after)
    assert model.head("lesion").compute_metrics(model.eval()(test_images).logits["lesion"], test_masks)[
        "dice"
    ] == pytest.approx(after)


def test_masks_are_checked() -> None:
    model = tiny_model({"lesion": LESION}).eval()
    images, masks = squares(2, seed=0)
    model(images, labels={"lesion": masks[:, None]})  # (B, 1, H, W) is accepted
    with pytest.raises(ValueError, match=r"labels for task 'lesion' \(segmentation\): mask size \(16, 16\)"):
        model(images, labels={"lesion": masks[:, :16, :16]})
    with pytest.raises(ValueError, match="mask values must be 0 or 1, found 2"):
        model(images, labels={"lesion": masks * 2})
    with pytest.raises(ValueError, match=r"expected a mask of shape \(2, H, W\)"):
        model(images, labels={"lesion": masks[0]})


def test_options_are_checked_against_the_backbone() -> None:
    with pytest.raises(
        ValueError, match=r"tasks.lesion.layers: 5 is not a layer of the backbone \(0 = embeddings .. 2\)"
    ):
        tiny_model({"lesion": {**LESION, "layers": [1, 5]}})
    with pytest.raises(ValueError, match=r"tasks.lesion.decoder_channels: 3 stage\(s\) for 2 layer\(s\)"):
        tiny_model({"lesion": {**LESION, "decoder_channels": [16, 8, 4]}})
    with pytest.raises(OptionsError, match=r"tasks.lesion: threshold must be in \(0, 1\)"):
        tiny_model({"lesion": {**LESION, "threshold": 1.0}})


def test_default_layers_follow_unetr() -> None:
    from mtl_hf_segmentation import default_layers

    assert default_layers(12) == [3, 6, 9, 12]
    assert default_layers(2) == [1, 2]
    assert default_layers(24) == [6, 12, 18, 24]


def test_a_saved_model_records_the_plugin_and_reloads(
    segmentation_plugin: metadata.Distribution, tmp_path
) -> None:
    model = tiny_model({"tumour": {"type": "binary_classification"}, "lesion": LESION}).eval()
    assert model.config.head_sources == {"segmentation": f"mtl-hf-segmentation {segmentation_plugin.version}"}
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    images, _ = squares(2, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(images).logits["lesion"], model(images).logits["lesion"])
    assert reloaded.config.head_sources == model.config.head_sources
