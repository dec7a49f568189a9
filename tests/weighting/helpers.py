"""A tiny MTL model, its batches and one training step written against the weighter protocol.

Used by the tests in this folder and by the two-process script they launch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mtl_hf import MTLConfig, MTLModel
from mtl_hf.weighting import BackwardContext, SharedFeatureRecorder
from tests.conftest import tiny_backbone

IMAGE = 32
PATCH = 8
GRID = (IMAGE // PATCH) ** 2
NUM_MASKED = 6

TINY_BACKBONE = tiny_backbone(
    image_size=IMAGE, patch_size=PATCH, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
)

# A classification task on the clean view, a second one sharing that view, and MIM on the masked view.
TASKS = {
    "tumour": {"type": "binary_classification"},
    "grade": {"type": "multiclass_classification", "num_classes": 3},
    "mim": {"type": "mim", "mask_patch_size": PATCH},
}


def tiny_model(
    weighting: Mapping[str, Any], seed: int = 0, tasks: Mapping[str, Any] | None = None
) -> MTLModel:
    torch.manual_seed(seed)
    config = MTLConfig(
        backbone_config=dict(TINY_BACKBONE), tasks=dict(tasks or TASKS), weighting=dict(weighting)
    )
    return MTLModel(config)


def batches(num: int, batch_size: int, seed: int = 1) -> list[dict[str, Any]]:
    """Deterministic batches; every image has exactly ``NUM_MASKED`` masked patches (so per-process
    MIM means average to the global mean)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num):
        masks = torch.zeros(batch_size, GRID, dtype=torch.bool)
        for b in range(batch_size):
            masks[b, torch.randperm(GRID, generator=g)[:NUM_MASKED]] = True
        out.append(
            {
                "pixel_values": torch.randn(batch_size, 3, IMAGE, IMAGE, generator=g),
                "labels": {
                    "tumour": torch.randint(0, 2, (batch_size,), generator=g),
                    "grade": torch.randint(0, 3, (batch_size,), generator=g),
                },
                "bool_masked_pos": masks,
            }
        )
    return out


def shard(batch: Mapping[str, Any], index: int, count: int) -> dict[str, Any]:
    """The ``index``-th of ``count`` equal slices of a batch."""
    n = batch["pixel_values"].shape[0] // count
    sl = slice(index * n, (index + 1) * n)
    return {
        "pixel_values": batch["pixel_values"][sl],
        "labels": {k: v[sl] for k, v in batch["labels"].items()},
        "bool_masked_pos": batch["bool_masked_pos"][sl],
    }


class FeatureRecorder(SharedFeatureRecorder):
    """The package's recorder on a model's heads, with ``pop`` for the test loops."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model.heads.values())

    def pop(self) -> list[torch.Tensor]:
        features = self.features
        self.clear()
        return features


def plain_context(model: MTLModel, **kwargs: Any) -> BackwardContext:
    """The context of a single-process PyTorch loop."""
    return BackwardContext(
        shared_parameters=model.shared_parameters(),
        parameters=[p for p in model.parameters() if p.requires_grad],
        **kwargs,
    )


def micro_step(
    model: nn.Module,
    weighter: Any,
    context: BackwardContext,
    recorder: FeatureRecorder,
    batch: Mapping[str, Any],
    sync_gradients: bool = True,
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Forward + weighter backward of one micro-batch, as the training loop does it."""
    with weighter.forward_context(context):
        out = model(
            pixel_values=batch["pixel_values"],
            labels=batch["labels"],
            bool_masked_pos=batch["bool_masked_pos"],
        )
    step = context.step(sync_gradients=sync_gradients, shared_features=recorder.pop())
    weights = weighter.backward(out.task_losses, out.loss, step)
    return weights, {k: float(v.detach()) for k, v in out.task_losses.items()}


def flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


# -- the two-process check (tests/weighting/test_distributed.py and distributed_steps.py) ----------------
DISTRIBUTED_WEIGHTINGS: dict[str, dict[str, Any]] = {
    "fixed": {"type": "fixed", "weights": {"mim": 0.5}},
    "uncertainty": {"type": "uncertainty"},
    "famo": {"type": "famo", "lr": 0.2},
    "rlw": {"type": "rlw"},
    "pcgrad": {"type": "pcgrad"},
    "mgda": {"type": "mgda", "normalization": "loss"},
    "mgda_ub": {"type": "mgda", "gradients": "features"},
    "cagrad": {"type": "cagrad"},
    "nash_mtl": {"type": "nash_mtl"},
    "gradnorm": {"type": "gradnorm"},
}
ACCUMULATION_STEPS = 2
OPTIMIZER_STEPS = 2
MICRO_BATCH = 4  # global; each of two processes sees half
LEARNING_RATE = 0.1


def run_steps(
    model: nn.Module,
    weighter: Any,
    context: BackwardContext,
    recorder: FeatureRecorder,
    micro_batches: list[dict[str, Any]],
    sync_flags: list[bool],
    optimizer: torch.optim.Optimizer,
    step_losses: Any,
) -> list[dict[str, float]]:
    """The training loop's inner part: micro-batches, optimizer steps at sync points, ``on_step_end``
    with the step's mean losses (``step_losses`` averages a dict over processes)."""
    logged = []
    sums: dict[str, float] = {}
    count = 0
    for batch, sync in zip(micro_batches, sync_flags, strict=True):
        weights, losses = micro_step(model, weighter, context, recorder, batch, sync)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        if sync:
            optimizer.step()
            optimizer.zero_grad()
            weighter.on_step_end(step_losses({k: v / count for k, v in sums.items()}))
            logged.append({k: float(v) for k, v in weights.items()})
            sums, count = {}, 0
    return logged
