"""MIM reconstructions (values), figures (valid PNGs) and the explain command end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mtl_hf import MTLImageProcessor, MTLModel
from mtl_hf.explain import (
    attention_maps,
    explain,
    named_models,
    reconstruct,
    save_attention_figure,
    save_comparison_grid,
    save_mim_figure,
    shared_mask,
)
from tests.conftest import tiny_config
from tests.explain.forced_model import forced_attention_model
from tests.explain.test_localization import forced_batches


def assert_png(path: Path, min_colours: int = 10) -> None:
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > 100 and img.height > 100
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) >= min_colours  # a drawing, not a blank canvas


def test_reconstruction_panels_share_one_mask_and_match_the_loss() -> None:
    processor = MTLImageProcessor(size=64)
    a = MTLModel(tiny_config()).eval()
    b = MTLModel(
        tiny_config(tasks={"tumour": {"type": "binary_classification"}, "mim": {"type": "mim", "loss": "l1"}})
    )
    x = torch.randn(2, 3, 64, 64)
    mask = shared_mask(a, 2, (4, 4), seed=3)
    assert torch.equal(mask, shared_mask(a, 2, (4, 4), seed=3)) and mask.any() and not mask.all()
    c = MTLModel(tiny_config(tasks={"mim": {"type": "mim", "norm_target": True}}))
    d = MTLModel(tiny_config(tasks={"recon": {"type": "mae", "norm_target": True}}))
    for model in (a, b, c, d):  # SimMIM (mse, l1, normalised targets) and MAE with normalised targets
        rec = reconstruct(model, x, mask, processor)
        pixel_mask = mask.reshape(2, 4, 4).repeat_interleave(16, 1).repeat_interleave(16, 2)
        assert torch.equal(rec.pixel_mask, pixel_mask)
        original = processor.unnormalize(x)
        torch.testing.assert_close(rec.original, original)
        assert (rec.masked_input[pixel_mask[:, None].expand(-1, 3, -1, -1)] == 0).all()
        visible = ~pixel_mask[:, None].expand(-1, 3, -1, -1)
        torch.testing.assert_close(rec.composite[visible], original[visible])
        assert (rec.error[~pixel_mask] == 0).all() and (rec.error[pixel_mask] > 0).all()
        for i in range(2):  # per-image loss equals the model's own loss on that image and mask
            with torch.no_grad():
                task = "recon" if model is d else "mim"
                loss = model.eval()(x[i : i + 1], bool_masked_pos=mask[i : i + 1], tasks=[task]).task_losses[
                    task
                ]
            assert rec.loss[i].item() == pytest.approx(loss.item(), rel=1e-5)


def test_figures_are_valid_pngs(tmp_path: Path) -> None:
    processor = MTLImageProcessor(size=64)
    model = MTLModel(tiny_config()).eval()
    x = torch.randn(2, 3, 64, 64)
    maps = attention_maps(model, x)
    display = processor.unnormalize(x)
    lesion = torch.zeros(64, 64)
    lesion[10:30, 20:40] = 1
    assert_png(save_attention_figure(display[0], maps, 0, tmp_path / "a.png", lesion=lesion, title="m"))
    grid = save_comparison_grid(
        list(display),
        {"one": list(maps.upsampled()), "two": list(maps.upsampled("rollout"))},
        tmp_path / "g.png",
    )
    assert_png(grid)
    mask = shared_mask(model, 2, (4, 4))
    assert_png(save_mim_figure({"m": reconstruct(model, x, mask, processor)}, 1, tmp_path / "mim.png"))
    with pytest.raises(ValueError, match="has 1 maps for 2 images"):
        save_comparison_grid(list(display), {"one": [maps.upsampled()[0]]}, tmp_path / "bad.png")


def test_explain_on_image_files(tmp_path: Path) -> None:
    for name, tasks in (("mtl", None), ("stl", {"tumour": {"type": "binary_classification"}})):
        MTLModel(tiny_config(tasks=tasks)).save_pretrained(tmp_path / name / "best_model")
        MTLImageProcessor(size=64).save_pretrained(tmp_path / name / "best_model")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (80, 60), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    models = [tmp_path / "stl", tmp_path / "mtl" / "best_model"]
    assert list(named_models(models)) == ["stl", "mtl"]
    out = tmp_path / "out"
    result = explain(models, images=[tmp_path / f"{i}.png" for i in range(3)], output_dir=out, max_images=1)
    names = sorted(str(p.relative_to(out)) for p in result.figures)
    assert names == sorted(
        [f"attention/{m}/image_0.png" for m in ("stl", "mtl")]
        + ["attention_grid_mean.png", "attention_grid_rollout.png", "mim/image_0.png"]
    )
    for path in result.figures:
        assert_png(path)
    assert result.localization is None and result.tables == {}


def test_explain_on_a_dataset_with_lesions(tmp_path: Path) -> None:
    forced = forced_attention_model()
    other = MTLModel(tiny_config()).eval()
    out = tmp_path / "out"
    result = explain(
        {"forced": forced, "random init": other},
        dataset=forced_batches(),
        output_dir=out,
        max_images=2,
        mim=False,
        n_resamples=100,
    )
    drawn = sorted(str(p.relative_to(out)) for p in result.figures)
    assert drawn == sorted(
        [f"attention/{m}/image_{i}.png" for m in ("forced", "random_init") for i in range(2)]
        + ["attention_grid_mean.png", "attention_grid_rollout.png"]
    )
    assert result.localization is not None
    assert {(r.model, r.map) for r in result.localization} == {
        ("forced", "mean"), ("forced", "rollout"), ("random init", "mean"), ("random init", "rollout"), ("chance", "-"),
    }  # fmt: skip
    assert result.tables["markdown"].read_text().count("\n") == 2 + 5
    assert_png(out / "attention_grid_mean.png")
    with pytest.raises(ValueError, match="give either images or dataset"):
        explain({"forced": forced}, output_dir=out)


def test_models_of_different_input_sizes_share_the_grid(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name, size in (("big", 64), ("small", 32)):
        MTLModel(tiny_config(backbone={"image_size": size})).save_pretrained(tmp_path / name)
        MTLImageProcessor(size=size).save_pretrained(tmp_path / name)
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 50), dtype=np.uint8)).save(
        tmp_path / "x.png"
    )
    with caplog.at_level("WARNING"):
        result = explain(
            [tmp_path / "big", tmp_path / "small"],
            images=[tmp_path / "x.png"],
            output_dir=tmp_path / "o",
            rollout=False,
        )
    assert "MIM panels skipped" in caplog.text  # a 4x4 and a 2x2 patch grid cannot share one mask
    assert sorted(p.name for p in result.figures) == ["attention_grid_mean.png", "image_0.png", "image_0.png"]
    with Image.open(tmp_path / "o" / "attention" / "small" / "image_0.png") as img:
        assert img.format == "PNG"
    assert_png(tmp_path / "o" / "attention_grid_mean.png")
