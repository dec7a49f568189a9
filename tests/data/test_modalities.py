"""Any number of modalities: the patch embedding adapted by value, four-modality BraTS trained end to
end in both naming schemes, and ``predict`` reading exactly the trained modalities of a patient."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoImageProcessor, ViTConfig, ViTModel

from mtl_hf import MTLImageProcessor
from mtl_hf.channels import PATCH_EMBEDDING_WEIGHT, adapt_input_conv
from mtl_hf.inference import predict
from mtl_hf.options import from_dict
from mtl_hf.train import build_model, train
from mtl_hf.training.config import RunConfig

from .files import make_volumes, write_case

MODALITIES = ["t1", "t1ce", "t2", "flair"]


def test_adapt_input_conv_matches_hand_computation() -> None:
    w = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2) - 5.0
    w0, w1, w2 = w[:, 0], w[:, 1], w[:, 2]
    four = adapt_input_conv(4, w)  # channels repeated cyclically, times 3/4
    for c, src in enumerate([w0, w1, w2, w0]):
        torch.testing.assert_close(four[:, c], src * 0.75, rtol=0, atol=0)
    torch.testing.assert_close(adapt_input_conv(1, w)[:, 0], w0 + w1 + w2, rtol=0, atol=0)
    torch.testing.assert_close(adapt_input_conv(2, w), torch.stack([w0, w1], 1) * 1.5, rtol=0, atol=0)
    torch.testing.assert_close(adapt_input_conv(3, w), w, rtol=0, atol=0)
    grey = w[:, :1]
    torch.testing.assert_close(adapt_input_conv(4, grey), grey.repeat(1, 4, 1, 1) / 4, rtol=0, atol=0)
    # What the scale is for: with C a multiple of 3, C identical channels give the response of the
    # original to 3 identical channels.
    x = torch.randn(1, 1, 4, 4)
    original = torch.nn.functional.conv2d(x.expand(1, 3, 4, 4), w, stride=2)
    six = adapt_input_conv(6, w)
    torch.testing.assert_close(torch.nn.functional.conv2d(x.expand(1, 6, 4, 4), six, stride=2), original)
    half = adapt_input_conv(4, w.half())
    assert half.dtype == torch.float16
    with pytest.raises(ValueError, match="5 input channels"):
        adapt_input_conv(4, torch.zeros(2, 5, 2, 2))


def test_processor_never_takes_four_channels_for_rgba() -> None:
    image = np.random.default_rng(0).random((4, 8, 8)).astype(np.float32)
    proc = MTLImageProcessor(size=8, num_channels=4, channel_names=MODALITIES, do_normalize=False)
    out = proc(image)["pixel_values"][0]
    torch.testing.assert_close(out, torch.from_numpy(image))  # channel 3 kept, not dropped as alpha
    out = proc(np.moveaxis(image, 0, -1))["pixel_values"][0]  # (H, W, 4): channels last
    torch.testing.assert_close(out, torch.from_numpy(image))
    rgb = MTLImageProcessor(size=8, num_channels=3)
    with pytest.raises(ValueError, match=r"the images have 4 channel\(s\) but the backbone takes 3"):
        rgb(image)
    with pytest.raises(ValueError, match="the model takes 4: t1, t1ce, t2, flair"):
        proc(image[:3])
    assert rgb.image_mean == [0.485, 0.456, 0.406]
    assert proc.image_mean == [0.485, 0.456, 0.406, 0.485] and proc.image_std[3] == 0.229


def test_processor_normalises_each_channel_and_says_how() -> None:
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 3000, (2, 16, 16)).astype(np.int16)
    raw[:, :2] = 0  # background
    spec = {"method": "zscore", "percentiles": [1, 99]}
    proc = MTLImageProcessor(
        size=16, num_channels=2, channel_names=["t1", "t2"], intensity=[spec, spec], do_normalize=False
    )
    out = proc(raw)["pixel_values"][0].numpy()
    fg = (raw != 0).any(axis=0)
    for c in range(2):
        v = raw[c].astype(np.float64)
        lo, hi = np.percentile(v[fg], [1, 99])
        clipped = np.clip(v, lo, hi)
        expected = np.where(fg, (clipped - clipped[fg].mean()) / clipped[fg].std(), 0)
        np.testing.assert_allclose(out[c], expected, atol=1e-4)
    assert "z-score" in proc.describe_intensity() and "t1, t2" in proc.describe_intensity()
    windows = MTLImageProcessor(
        size=2, num_channels=2, channel_names=["ct"], do_normalize=False,
        intensity=[{"method": "window", "windows": [{"preset": "brain"}, {"level": 0, "width": 1000}]}],
    )  # fmt: skip
    hu = np.array([[-1000, 0], [40, 600]], np.int16)
    out = windows(hu)["pixel_values"][0].numpy()
    np.testing.assert_allclose(out[0], [[0, 0], [0.5, 1]])  # brain window: 0..80 HU
    np.testing.assert_allclose(out[1], [[0, 0.5], [0.54, 1]])  # -500..500 HU
    assert windows.output_channel_names == ["ct:brain", "ct:L0W1000"]


def write_patients(root: Path, n: int) -> None:
    """``n`` four-modality patients (32x32x6), half in 2021 naming, half in 2023 naming, a tumour in
    every other one."""
    rng = np.random.default_rng(0)
    for i in range(n):
        naming = "2021" if i % 2 else "2023"
        pid = f"BraTS2021_{i:05d}" if naming == "2021" else f"BraTS-GLI-{i:05d}-000"
        write_case(root / pid, pid, make_volumes(rng, shape=(32, 32, 6), tumour=i % 4 < 2), naming=naming)


def tiny_pretrained(folder: Path) -> Path:
    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        image_size=32, patch_size=8, encoder_stride=8, num_channels=3,
    )  # fmt: skip
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder


def test_four_modalities_train_from_a_three_channel_backbone(tmp_path: Path) -> None:
    write_patients(tmp_path / "brats", 8)
    backbone = tiny_pretrained(tmp_path / "backbone")
    raw = {
        "output_dir": str(tmp_path / "run"),
        "cache_dir": str(tmp_path / "cache"),
        "model": {"backbone": str(backbone), "tasks": {"tumour": {"type": "binary_classification"}, "mim": {"type": "mim"}}},
        "data": {
            "kind": "brats",
            "root": str(tmp_path / "brats"),
            "brats": {"modalities": ["t1n", "t1ce", "t2w", "flair"]},  # names of both schemes
            "image_size": 32,
            "num_proc": 2,
            "split": {"train": 0.5, "validation": 0.25, "test": 0.25},
        },
        "task_columns": {"tumour": "tumour"},
        "training": {"epochs": 1, "batch_size": 8, "bootstrap_resamples": 20},
    }  # fmt: skip
    config = from_dict(RunConfig, raw)
    # The adapted patch embedding, by value: channel c takes the RGB kernel of channel c mod 3, times 3/4.
    model = build_model(config)
    from safetensors.torch import load_file

    rgb = load_file(backbone / "model.safetensors")[PATCH_EMBEDDING_WEIGHT]
    adapted = model.backbone.state_dict()[PATCH_EMBEDDING_WEIGHT]
    assert adapted.shape == (32, 4, 8, 8) and model.config.backbone_config.num_channels == 4
    for c in range(4):
        torch.testing.assert_close(adapted[:, c], rgb[:, c % 3] * 0.75, rtol=0, atol=0)
    bias = load_file(backbone / "model.safetensors")["embeddings.patch_embeddings.projection.bias"]
    torch.testing.assert_close(
        model.backbone.state_dict()["embeddings.patch_embeddings.projection.bias"], bias
    )

    out = train(config).output_dir
    best = out / "best_model"
    saved = json.loads((best / "config.json").read_text())
    assert saved["backbone_config"]["num_channels"] == 4
    processor = AutoImageProcessor.from_pretrained(best)
    assert processor.channel_names == MODALITIES and processor.num_channels == 4
    assert processor.intensity[0]["method"] == "minmax"

    # predict reads exactly the trained modalities of a patient folder, in either naming scheme.
    patients = [tmp_path / "brats" / "BraTS-GLI-00000-000", tmp_path / "brats" / "BraTS2021_00001"]
    result = predict(best, [patients[0], patients[1]], output_dir=tmp_path / "pred", progress=False)
    assert [v.source for v in result.volumes] == [
        str(patients[0] / f"{patients[0].name}-t1n.nii.gz"),
        str(patients[1] / f"{patients[1].name}_t1.nii.gz"),
    ]
    assert all(v.num_slices == 4 for v in result.volumes)  # the 4 brain slices of 6
    assert (
        "t1, t1ce, t2, flair" in json.loads((tmp_path / "pred" / "predictions.json").read_text())["intensity"]
    )
    # The slices predict builds are the training cache's slices (stored as uint8: within half a step).
    from mtl_hf.inference.patients import plan_sources, read_source

    (source,), refused_now = plan_sources([patients[1]], processor)
    assert not refused_now
    first = next(iter(read_source(source)))
    from mtl_hf.data import DataConfig, build_cache, decode_image

    ds, _ = build_cache(from_dict(DataConfig, raw["data"], "data"), tmp_path / "cache")
    row = next(r for r in ds if r["sample_id"] == f"{patients[1].name}/{first.index:03d}")
    np.testing.assert_allclose(np.moveaxis(first.image, -1, 0), decode_image(row), atol=0.5 / 255 + 1e-6)

    # A patient folder lacking a trained modality is refused, naming the folder and the modality.
    lacking = tmp_path / "lacking" / patients[1].name
    shutil.copytree(patients[1], lacking)
    (lacking / f"{patients[1].name}_t2.nii.gz").unlink()
    refused = predict(best, [lacking, patients[0]], output_dir=tmp_path / "pred2", progress=False)
    (error,) = refused.errors
    assert (
        error.source == str(lacking)
        and "no t2 volume; the model was trained on t1, t1ce, t2, flair" in error.reason
    )
    assert [v.source for v in refused.volumes] == [str(patients[0] / f"{patients[0].name}-t1n.nii.gz")]
    assert str(lacking) in (tmp_path / "pred2" / "errors.csv").read_text()
    # A lone volume without a modality name is refused by a model of several modalities.
    import nibabel as nib

    scan = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 2), np.int16), np.eye(4)), scan)
    (error,) = predict(best, [scan], progress=False).errors
    assert error.source == str(scan) and "reads 4 modalities" in error.reason
