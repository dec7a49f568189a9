"""MTLImageProcessor: formats in, values out against hand computations, save/load through AutoImageProcessor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor

from mtl_hf import MTLImageProcessor, MTLModel
from tests.conftest import tiny_config


def test_grey_uint8_is_replicated_and_normalised_by_hand() -> None:
    proc = MTLImageProcessor(size=4, image_mean=[0.5, 0.25, 0.0], image_std=[0.5, 0.25, 1.0])
    img = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    pv = proc(img).pixel_values
    assert pv.shape == (1, 3, 4, 4) and pv.dtype == torch.float32
    x = img.astype(np.float32) / 255
    np.testing.assert_allclose(pv[0, 0].numpy(), (x - 0.5) / 0.5, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(pv[0, 1].numpy(), (x - 0.25) / 0.25, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(pv[0, 2].numpy(), x, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a,  # (H, W)
        lambda a: a[..., None],  # (H, W, 1)
        lambda a: a[None],  # (1, H, W)
        lambda a: Image.fromarray(a),  # PIL "L"
        lambda a: torch.from_numpy(a)[None],  # tensor (1, H, W)
    ],
)
def test_grey_layouts_agree(make) -> None:
    a = (np.random.default_rng(0).random((20, 30)) * 255).astype(np.uint8)
    proc = MTLImageProcessor(size={"height": 16, "width": 24})
    ref = proc(a).pixel_values
    torch.testing.assert_close(proc(make(a)).pixel_values, ref)


def test_channels_the_backbone_does_not_take_are_an_error() -> None:
    proc = MTLImageProcessor(size=2, num_channels=1, do_normalize=False)
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    with pytest.raises(
        ValueError, match=r"image 0: the images have 3 channel\(s\) but the backbone takes 1.*grayscale"
    ):
        proc(rgb)
    rgba = np.concatenate([rgb, np.full((2, 2, 1), 7, np.uint8)], axis=-1)
    with pytest.raises(ValueError, match="the images have 4 channel"):  # an array's 4th channel is no alpha
        proc(rgba)
    three = MTLImageProcessor(size=2, num_channels=3, do_normalize=False)
    grey = np.full((2, 2), 51, np.uint8)  # grey is replicated: the one conversion made
    torch.testing.assert_close(three(grey).pixel_values, torch.full((1, 3, 2, 2), 0.2))
    # A PIL image says it has alpha, which is dropped; an array of 4 channels is 4 channels, never RGBA.
    torch.testing.assert_close(
        three(Image.fromarray(rgba, mode="RGBA")).pixel_values, three(rgb).pixel_values
    )
    with pytest.raises(ValueError, match="the images have 4 channel"):
        three(rgba)


def test_sixteen_bit_and_float_inputs() -> None:
    proc = MTLImageProcessor(size=2, do_normalize=False, num_channels=1)
    img16 = np.array([[1000, 2000], [3000, 5000]], dtype=np.uint16)
    torch.testing.assert_close(proc(img16).pixel_values[0, 0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    flt = np.array([[0.1, 0.2], [0.3, 0.4]], dtype=np.float32)
    torch.testing.assert_close(proc(flt).pixel_values[0, 0], torch.from_numpy(flt))


def test_resize_matches_torch_antialiased_bilinear() -> None:
    a = np.random.default_rng(1).random((40, 50)).astype(np.float32)
    proc = MTLImageProcessor(size=8, do_normalize=False, num_channels=1)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(a)[None, None], size=(8, 8), mode="bilinear", antialias=True, align_corners=False
    )
    torch.testing.assert_close(proc(a).pixel_values, ref)


def test_batch_and_bad_inputs() -> None:
    proc = MTLImageProcessor(size=8)
    batch = [np.zeros((10, 10), np.uint8), np.ones((12, 9), np.uint8)]
    assert proc(batch).pixel_values.shape == (2, 3, 8, 8)
    bad = np.ones((5, 5), np.float32)
    bad[2, 2] = np.nan
    with pytest.raises(ValueError, match="image 1: contains NaN"):
        proc([np.ones((5, 5), np.float32), bad])
    with pytest.raises(ValueError, match="expected 2 or 3 dimensions"):
        proc(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="channel axis"):
        proc(np.zeros((7, 8, 9)))
    with pytest.raises(TypeError, match="unsupported type str"):
        proc("scan.png")
    with pytest.raises(ValueError, match="image_mean has 1 values for 3 channels"):
        MTLImageProcessor(image_mean=[0.5])


def test_saved_with_the_model_and_reloaded_by_auto_classes(tmp_path: Path) -> None:
    config = tiny_config(backbone={"num_channels": 1})
    model = MTLModel(config).eval()
    proc = MTLImageProcessor.for_backbone(config.backbone_config)
    assert proc.num_channels == 1 and proc.size == {"height": 64, "width": 64}
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, MTLImageProcessor)
    assert loaded.to_dict() == proc.to_dict()
    img = (np.random.default_rng(2).random((80, 70)) * 255).astype(np.uint8)
    pv = loaded(img).pixel_values
    assert pv.shape == (1, 1, 64, 64)
    reloaded = MTLModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded(pv).logits["tumour"], model(proc(img).pixel_values).logits["tumour"])


def test_unnormalize_inverts_normalize() -> None:
    proc = MTLImageProcessor(size=6)
    img = (np.random.default_rng(3).random((6, 6)) * 255).astype(np.uint8)
    back = proc.unnormalize(proc(img).pixel_values)[0]
    torch.testing.assert_close(back, torch.from_numpy(img.astype(np.float32) / 255).expand(3, -1, -1))
