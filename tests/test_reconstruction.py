"""The reconstruction-head interface (``mim`` and ``mae``): per-sample losses and errors by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_hf import MTLModel
from mtl_hf.explain import mim_task_of
from mtl_hf.heads import MaskedAutoencoderHead, MaskedImageModelingHead, ReconstructionHead
from tests.conftest import tiny_config

HEAD_OPTIONS = {
    "mim": {"type": "mim", "mask_patch_size": 16},
    "mae": {"type": "mae", "decoder_dim": 32, "decoder_heads": 2, "mask_ratio": 0.5},
}


def model_with(kind: str, **options: object) -> MTLModel:
    tasks = {"tumour": {"type": "binary_classification"}, "recon": {**HEAD_OPTIONS[kind], **options}}
    return MTLModel(tiny_config(tasks=tasks)).eval()


def hand_losses(
    reconstruction: np.ndarray, x: np.ndarray, mask: np.ndarray, kind: str, norm: str | None
) -> np.ndarray:
    """Per image: mean error over the pixels and channels of masked 16-px patches of a 4 x 4 grid; with
    ``norm`` the target patch is normalised per channel or over the whole patch."""
    out = []
    for b in range(x.shape[0]):
        errors = []
        for k in np.flatnonzero(mask[b]):
            rows, cols = slice(16 * (k // 4), 16 * (k // 4) + 16), slice(16 * (k % 4), 16 * (k % 4) + 16)
            target, pred = x[b, :, rows, cols], reconstruction[b, :, rows, cols]
            if norm is not None:
                axes = (1, 2) if norm == "channel" else (0, 1, 2)
                mean, var = target.mean(axis=axes, keepdims=True), target.var(axis=axes, keepdims=True)
                target = (target - mean) / np.sqrt(var + 1e-6)
            errors.append((pred - target) ** 2 if kind == "mse" else np.abs(pred - target))
        out.append(np.mean(errors) if errors else 0.0)
    return np.array(out)


@pytest.mark.parametrize(
    ("head", "options", "norm"),
    [
        ("mim", {}, None),
        ("mim", {"loss": "l1", "norm_target": True}, "channel"),
        ("mae", {}, None),
        ("mae", {"norm_target": True}, "patch"),
    ],
)
def test_losses_per_sample_and_over_the_batch(head: str, options: dict, norm: str | None) -> None:
    model = model_with(head, **options)
    x = torch.randn(3, 3, 64, 64) * 2 + 0.5
    mask = model.head("recon").sample_mask(3, (4, 4), torch.device("cpu"), torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x, bool_masked_pos=mask, tasks=["recon"])
    r = out.reconstructions["recon"]
    expected = hand_losses(
        r.double().numpy(), x.double().numpy(), mask.numpy(), options.get("loss", "mse"), norm
    )
    per_sample = model.head("recon").loss(r, x, mask, per_sample=True)
    np.testing.assert_allclose(per_sample.numpy(), expected, rtol=1e-5)
    counts = mask.sum(dim=1).numpy()  # the batch loss weighs each image by its masked pixels
    batch = float((expected * counts).sum() / counts.sum())
    assert out.task_losses["recon"].item() == pytest.approx(batch, rel=1e-5)


@pytest.mark.parametrize(("head", "norm"), [("mim", "channel"), ("mae", "patch")])
def test_reconstruction_error_is_measured_in_pixel_space(head: str, norm: str) -> None:
    """With ``norm_target`` the head predicts normalised patches: the error puts each input patch's
    statistics back first, so it compares with heads trained on raw targets."""
    model = model_with(head, norm_target=True)
    recon = model.head("recon")
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64) * 3 + 1
    prediction = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    mask = recon.sample_mask(2, (4, 4), torch.device("cpu"), torch.Generator().manual_seed(2))
    data, pred = x.numpy(), prediction.numpy()
    pixels = np.empty_like(pred)
    for b in range(2):
        for k in range(16):
            rows, cols = slice(16 * (k // 4), 16 * (k // 4) + 16), slice(16 * (k % 4), 16 * (k % 4) + 16)
            axes = (1, 2) if norm == "channel" else (0, 1, 2)
            square = data[b, :, rows, cols]
            mean, var = square.mean(axis=axes, keepdims=True), square.var(axis=axes, keepdims=True)
            pixels[b, :, rows, cols] = pred[b, :, rows, cols] * np.sqrt(var + 1e-6) + mean
    np.testing.assert_allclose(
        recon.reconstruction_to_pixels(prediction, x).numpy(), pixels, rtol=1e-5, atol=1e-5
    )
    # the error of the pixel-space prediction, as a head with raw targets would be scored
    expected = hand_losses(pixels, data, mask.numpy(), "mse", None)
    np.testing.assert_allclose(recon.reconstruction_error(prediction, x, mask).numpy(), expected, rtol=1e-5)


def test_raw_target_error_is_the_mean_squared_error_over_masked_pixels() -> None:
    recon = model_with("mim", loss="l1").head("recon")
    x, prediction = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, [0, 5]] = True  # the second image hides nothing: error 0, not NaN
    error = recon.reconstruction_error(prediction, x, mask)
    patches = [(prediction - x)[0, :, 0:16, 0:16], (prediction - x)[0, :, 16:32, 16:32]]
    expected = torch.stack([torch.cat([p.reshape(-1) for p in patches]).square().mean(), torch.tensor(0.0)])
    torch.testing.assert_close(error, expected)


def test_built_in_reconstruction_heads_share_the_interface() -> None:
    for kind, cls in (("mim", MaskedImageModelingHead), ("mae", MaskedAutoencoderHead)):
        model = model_with(kind)
        assert isinstance(model.head("recon"), cls) and isinstance(model.head("recon"), ReconstructionHead)
        assert mim_task_of(model) == "recon"
    with pytest.raises(
        ValueError, match="'tumour' is not a masked-image-modeling task; MIM tasks: \\['recon'\\]"
    ):
        mim_task_of(model_with("mae"), "tumour")


@pytest.mark.parametrize("head", ["mim", "mae"])
def test_validation_error_is_the_heads_pixel_space_error(head: str) -> None:
    """The evaluation loop's ``mse/<task>`` is the mean over samples of the head's
    ``reconstruction_error``, with masks drawn from the seeded generator (here with ``norm_target``,
    where the error is taken after the patch statistics are put back)."""
    from accelerate import Accelerator

    from mtl_hf.training.evaluation_loop import collect_predictions

    model = model_with(head, norm_target=True)
    x = torch.randn(5, 3, 64, 64) * 2 + 1
    batches = [
        {"pixel_values": x[:3], "labels": {"tumour": torch.tensor([0, 1, 0])}},
        {"pixel_values": x[3:], "labels": {"tumour": torch.tensor([1, 0])}},
    ]
    got = collect_predictions(model, batches, Accelerator(cpu=True), ["tumour", "recon"], seed=7)["mse"]
    recon, generator, errors = model.head("recon"), torch.Generator().manual_seed(7), []
    for batch in batches:
        pixels = batch["pixel_values"]
        mask = recon.sample_mask(len(pixels), (4, 4), torch.device("cpu"), generator=generator)
        with torch.no_grad():
            out = model(pixels, bool_masked_pos=mask, tasks=["recon"])
        pred = recon.reconstruction_to_pixels(out.reconstructions["recon"], pixels)
        m = recon.pixel_mask(mask, (4, 4))
        errors += [
            float(((pred[i] - pixels[i]) ** 2 * m[i]).sum() / (3 * m[i].sum())) for i in range(len(pixels))
        ]
    assert got["recon"] == pytest.approx(sum(errors) / len(errors), rel=1e-5)
