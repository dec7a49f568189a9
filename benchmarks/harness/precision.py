"""The precision suite: what bf16 autocast changes on one batch and one mask."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .cases import OURS
from .device import autocast
from .workbench import Workbench


def precision_suite(bench: Workbench) -> dict[str, Any]:
    """bf16 autocast vs fp32 on one batch and one mask: max |Δ| of logits and reconstructions,
    relative Δ of each loss, cosine similarity of the backbone gradients."""
    out: dict[str, Any] = {}
    x, y = bench.pixel_values, bench.labels
    for base in OURS:
        if base not in bench.models:
            continue
        model: Any = bench.models[base]
        model.train()
        model.config.view_layout = "two_pass"
        mask = None
        needs_mask = [n for n in model.config.task_names if model.head(n).view != "clean"]
        if needs_mask:
            mask = model.head(needs_mask[0]).sample_mask(bench.batch_size, bench.grid, bench.device)
        results = []
        for bf16 in (False, True):
            model.zero_grad(set_to_none=True)
            with autocast(bench.device, bf16):
                o = model(pixel_values=x, labels={"tumour": y}, bool_masked_pos=mask)
            o.loss.backward()
            o.logits = {t: v.detach() for t, v in o.logits.items()}
            o.task_losses = {t: v.detach() for t, v in o.task_losses.items()}
            o.reconstructions = {t: v.detach() for t, v in (o.reconstructions or {}).items()}
            grad = torch.cat(
                [p.grad.flatten().float() for p in model.backbone.parameters() if p.grad is not None]
            )
            results.append((o, grad))
        model.zero_grad(set_to_none=True)
        (ref, g32), (low, g16) = results
        entry: dict[str, Any] = {
            "logits_max_abs_diff": float(
                (ref.logits["tumour"].float() - low.logits["tumour"].float()).abs().max()
            ),
            "logits_max_abs": float(ref.logits["tumour"].abs().max()),
            "loss_rel_diff": {
                t: float((low.task_losses[t].float() - v.float()).abs() / v.float().abs().clamp_min(1e-12))
                for t, v in ref.task_losses.items()
            },
            "grad_cosine": float(F.cosine_similarity(g32.double(), g16.double(), dim=0)),
        }
        for t, r in (ref.reconstructions or {}).items():
            entry[f"reconstruction_max_abs_diff/{t}"] = float(
                (r.float() - low.reconstructions[t].float()).abs().max()
            )
        out[base] = entry
    return out
