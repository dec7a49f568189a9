"""The optimizer suite: one AdamW step over the backbone's parameters, fused, foreach and plain loop."""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import torch

from .device import synchronize


def optimizer_suite(
    backbone: dict[str, Any], device: torch.device, rounds: int, warmup: int
) -> dict[str, Any]:
    """ms per AdamW step over the backbone's parameters (random gradients), implementations interleaved."""
    from transformers import ViTConfig, ViTModel

    model = ViTModel(
        ViTConfig(**{k: v for k, v in backbone.items() if k != "model_type"}), add_pooling_layer=False
    )
    params = [p.detach().to(device).requires_grad_() for p in model.parameters()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    variants: dict[str, dict[str, Any]] = {
        "fused": {"fused": True},
        "foreach": {"foreach": True},
        "loop": {"foreach": False},
    }
    optimizers = {}
    for name, kwargs in variants.items():
        try:
            optimizers[name] = torch.optim.AdamW(params, lr=1e-4, **kwargs)
        except (RuntimeError, ValueError) as exc:  # e.g. no fused kernel for this device
            optimizers[name] = None  # type: ignore[assignment]
            print(f"AdamW {name} unavailable: {exc}", file=sys.stderr)
    live = {n: o for n, o in optimizers.items() if o is not None}
    times: dict[str, list[float]] = {n: [] for n in live}
    names = list(live)
    for r in range(warmup + rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            start = time.perf_counter()
            live[name].step()
            synchronize(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    fastest = min(statistics.median(t) for t in times.values())
    return {
        "parameters": sum(p.numel() for p in params),
        "ms_per_step": {n: 1e3 * statistics.median(t) for n, t in times.items()},
        "relative_to_fastest": {n: statistics.median(t) / fastest for n, t in times.items()},
        "default_choice": "fused (mtl_hf.training.optim.build_optimizer, implementation='auto')",
    }
