"""AdamW parameter groups (no decay on biases and norms, layer-wise lr decay) and the schedule of a phase."""

from __future__ import annotations

import re
import warnings

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


SCHEDULES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}
"""``schedule.name`` -> the ``transformers.get_scheduler`` schedule it runs."""


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: ScheduleSection, total_steps: int, done_steps: int = 0
) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule of one training phase (``transformers.get_scheduler``), already at step
    ``done_steps`` (a resumed run): linear warm-up from zero, then cosine or linear decay to zero, or a
    constant rate. Each group's rate is its own base rate (layer-wise decay) times the schedule's factor.

    Args:
        optimizer: The optimizer; its groups' ``lr`` when the first schedule is built are the peak
            rates, which later phases (and a resumed run, through the optimizer's state) start from again.
        schedule: Name and warm-up.
        total_steps: Optimizer steps of the phase.
        done_steps: Steps of the phase already taken.
    """
    from transformers import get_scheduler

    total = max(1, total_steps)
    warmup = (
        schedule.warmup_steps if schedule.warmup_steps is not None else round(schedule.warmup_ratio * total)
    )
    warmup = min(warmup, total - 1)
    scheduler = get_scheduler(
        SCHEDULES[schedule.name], optimizer, num_warmup_steps=warmup, num_training_steps=total
    )
    if done_steps:
        with warnings.catch_warnings():  # "step() before optimizer.step()": this is a fast-forward
            warnings.simplefilter("ignore", UserWarning)
            scheduler.last_epoch = done_steps - 1
            scheduler.step()
    return scheduler
