"""AdamW parameter groups (no decay on biases and norms, layer-wise lr decay) and phase-aware schedules."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
from torch import nn

from .config import OptimizerSection, ScheduleSection

_LAYER = re.compile(r"(?:^|\.)(?:layers?|layer)\.(\d+)\.")


def backbone_depth(name: str, num_layers: int) -> int:
    """Depth of a parameter for layer-wise decay: 0 for embeddings, ``i + 1`` for block ``i``,
    ``num_layers + 1`` for the final norm and everything outside the backbone (heads, weighter)."""
    if not name.startswith("backbone."):
        return num_layers + 1
    match = _LAYER.search(name)
    if match:
        return int(match.group(1)) + 1
    if ".embeddings." in name or name.startswith("backbone.embeddings"):
        return 0
    return num_layers + 1


def no_weight_decay(name: str, param: nn.Parameter) -> bool:
    """Biases, norm weights, tokens and position embeddings are not decayed."""
    return param.ndim <= 1 or name.endswith(".bias") or "token" in name or "position_embeddings" in name


def parameter_groups(model: nn.Module, settings: OptimizerSection, num_layers: int) -> list[dict]:
    """AdamW groups keyed by (depth, decay): ``lr * layer_decay ** (num_layers + 1 - depth)``."""
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = backbone_depth(name, num_layers)
        decay = not no_weight_decay(name, param)
        key = (depth, decay)
        if key not in groups:
            scale = settings.layer_decay ** (num_layers + 1 - depth)
            groups[key] = {
                "params": [],
                "names": [],
                "lr": settings.lr * scale,
                "lr_scale": scale,
                "weight_decay": settings.weight_decay if decay else 0.0,
            }
        groups[key]["params"].append(param)
        groups[key]["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def build_optimizer(model: nn.Module, settings: OptimizerSection, num_layers: int) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups`, using the fastest implementation available."""
    groups = parameter_groups(model, settings, num_layers)
    for group in groups:
        group.pop("names")
    kwargs: dict = {}
    impl = settings.implementation
    if impl == "auto":
        params = [p for g in groups for p in g["params"]]
        impl = "fused" if all(p.is_floating_point() for p in params) else "foreach"
    if impl == "fused":
        kwargs["fused"] = True
    elif impl == "foreach":
        kwargs["foreach"] = True
    else:
        kwargs["foreach"] = False
    return torch.optim.AdamW(groups, lr=settings.lr, betas=settings.betas, eps=settings.eps, **kwargs)


def phase_lr_factor(step: int, phase_steps: Sequence[int], schedule: ScheduleSection) -> float:
    """Multiplier of each group's base lr at optimizer step ``step`` (0-based) of a run whose phases
    last ``phase_steps`` optimizer steps each; warm-up and decay restart at every phase."""
    start = 0
    for i, length in enumerate(phase_steps):
        if step < start + length or i == len(phase_steps) - 1:
            return _factor(step - start, length, schedule)
        start += length
    return 0.0


def set_learning_rates(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> None:
    """Set every group's lr to ``base_lr * group["lr_scale"] * factor`` (the schedule is stateless:
    it depends on the step alone, which the trainer state restores on resume)."""
    for group in optimizer.param_groups:
        group["lr"] = base_lr * group.get("lr_scale", 1.0) * factor


def _factor(step: int, total: int, schedule: ScheduleSection) -> float:
    total = max(1, total)
    warmup = (
        schedule.warmup_steps if schedule.warmup_steps is not None else round(schedule.warmup_ratio * total)
    )
    warmup = min(warmup, total - 1) if total > 1 else 0
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule.name == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule.name == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))
