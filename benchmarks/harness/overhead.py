"""The overhead suite: what our code adds per call where compute vanishes."""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from .cases import Case
from .device import synchronize
from .workbench import Workbench

OVERHEAD_MODELS = ("hf_cls", "hf_mim", "stl", "mtl", "mtl_mae")


def overhead_suite(
    backbone: dict[str, Any], batch_size: int, device: torch.device, reps: int = 200
) -> dict[str, Any]:
    """Ours vs the peers on a one-layer, 32-wide ViT with a 2 x 2 patch grid and one image
    (training-mode forward with labels, and eval forward), median microseconds over interleaved calls;
    plus the input check that grows with the batch (``torch.isfinite(pixel_values).all()`` at the
    benchmark's batch and image size). Unlike step ratios, these barely move with the machine's load."""
    patch = int(backbone["patch_size"])
    tiny = {
        **backbone,
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "image_size": 2 * patch,
    }
    work = Workbench(tiny, 1, device, cases=[Case(m) for m in OVERHEAD_MODELS])
    # name -> (model to put in train or eval mode first, or None; train?; the timed call)
    calls: dict[str, tuple[Any, bool, Callable[[], Any]]] = {}
    for name in OVERHEAD_MODELS:
        forward = work.forward(name, work.models[name])
        calls[f"{name} train forward"] = (work.models[name], True, functools.partial(forward, True))
    for name in ("hf_cls", "stl"):
        forward = work.forward(name, work.models[name])
        calls[f"{name} eval forward"] = (work.models[name], False, functools.partial(forward, False))
    size = int(backbone["image_size"])
    images = torch.randn(batch_size, int(backbone["num_channels"]), size, size, device=device)
    calls["input check"] = (None, False, lambda: bool(torch.isfinite(images).all()))
    # The same answer in one reduction pass: a sum is finite exactly when no element is NaN or inf,
    # unless finite values overflow float32 (then the full check decides).
    calls["input check, one-pass sum"] = (None, False, lambda: bool(torch.isfinite(images.sum())))
    times: dict[str, list[float]] = {n: [] for n in calls}
    with torch.no_grad():
        for _ in range(reps):
            for name, (model, train, call) in calls.items():
                if model is not None:
                    model.train(train)
                synchronize(device)
                start = time.perf_counter()
                call()
                synchronize(device)
                times[name].append(time.perf_counter() - start)
    us = {n: 1e6 * statistics.median(t) for n, t in times.items()}
    return {
        "microseconds": us,
        "stl - hf_cls, train forward": us["stl train forward"] - us["hf_cls train forward"],
        "stl - hf_cls, eval forward": us["stl eval forward"] - us["hf_cls eval forward"],
        "mtl - (hf_cls + hf_mim), train forward": us["mtl train forward"]
        - us["hf_cls train forward"]
        - us["hf_mim train forward"],
        "input check at the benchmark batch": us["input check"],
    }
