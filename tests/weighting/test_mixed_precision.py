"""Loss scaling (a real ``torch.amp.GradScaler`` driven by Accelerate) and bf16 autocast.

Accelerate builds a GradScaler for fp16 on GPUs only; on this CPU the test gives the Accelerator a CPU
GradScaler before ``prepare``, so ``accelerator.backward`` scales losses and the prepared optimizer
unscales, checks for overflow and skips steps exactly as in fp16 GPU training.
"""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator

from mtl_hf.weighting import BackwardContext
from tests.weighting.helpers import (
    FeatureRecorder,
    batches,
    flat_params,
    micro_step,
    plain_context,
    tiny_model,
)

WEIGHTINGS = [
    {"type": "fixed"},
    {"type": "pcgrad"},
    {"type": "nash_mtl"},
    {"type": "mgda", "gradients": "features"},
    {"type": "gradnorm"},
]


def one_step(weighting: dict, scale: float | None, mixed_precision: str = "no"):
    accelerator = Accelerator(cpu=True, mixed_precision=mixed_precision)
    if scale is not None:
        accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=scale)
    model = tiny_model(weighting)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    recorder = FeatureRecorder(model)
    context = BackwardContext.from_accelerator(accelerator, model)
    with accelerator.accumulate(model):
        weights, _ = micro_step(
            model, model.weighter, context, recorder, batches(1, 4)[0], accelerator.sync_gradients
        )
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer, accelerator, {k: float(v) for k, v in weights.items()}


@pytest.mark.parametrize("weighting", WEIGHTINGS, ids=lambda w: "-".join(str(v) for v in w.values()))
def test_loss_scaled_step_equals_the_unscaled_step(weighting: dict) -> None:
    scaled, optimizer, accelerator, weights = one_step(weighting, scale=2.0**14)
    assert accelerator.scaler is not None and not optimizer.step_was_skipped
    plain, _, _, plain_weights = one_step(weighting, scale=None)
    assert weights == pytest.approx(plain_weights, rel=1e-5)
    torch.testing.assert_close(flat_params(scaled), flat_params(plain), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("weighting", WEIGHTINGS[1:], ids=lambda w: "-".join(str(v) for v in w.values()))
def test_overflowing_step_is_skipped_and_leaves_the_weighter_state_alone(weighting: dict) -> None:
    initial = tiny_model(weighting)
    model, optimizer, accelerator, _ = one_step(weighting, scale=2.0**127)
    assert optimizer.step_was_skipped
    assert accelerator.scaler.get_scale() < 2.0**127
    torch.testing.assert_close(flat_params(model), flat_params(initial), atol=0, rtol=0)
    for key, value in initial.weighter.state_dict().items():
        assert torch.equal(model.weighter.state_dict()[key], value), key


def autocast_step(weighting: dict, dtype: torch.dtype | None) -> torch.Tensor:
    """One plain step with the forward under ``torch.autocast`` (what Accelerate's bf16 mode does;
    an Accelerator's precision cannot change within one process); returns the parameter update."""
    model = tiny_model(weighting)
    start = flat_params(model)
    recorder = FeatureRecorder(model)
    context = plain_context(model)
    batch = batches(1, 4)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
        out = model(
            pixel_values=batch["pixel_values"],
            labels=batch["labels"],
            bool_masked_pos=batch["bool_masked_pos"],
        )
    model.weighter.backward(
        out.task_losses, out.loss, context.step(sync_gradients=True, shared_features=recorder.pop())
    )
    return (
        torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        if all(p.grad is not None for p in model.parameters())
        else start * 0
    )


@pytest.mark.parametrize("weighting", WEIGHTINGS[1:], ids=lambda w: "-".join(str(v) for v in w.values()))
def test_bf16_autocast_gradients_are_close_to_fp32(weighting: dict) -> None:
    bf16, fp32 = autocast_step(weighting, torch.bfloat16), autocast_step(weighting, None)
    assert bool(torch.isfinite(bf16).all()) and float(bf16.norm()) > 0
    assert float(torch.nn.functional.cosine_similarity(bf16, fp32, dim=0)) > 0.95
