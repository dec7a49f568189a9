"""How a micro-batch's forward and backward passes are ordered: all views then one backward, or view by view.

``training.view_schedule`` chooses:

* ``"joint"``: one forward pass runs every view (clean, masked, visible) and every head, and the
  weighter back-propagates the combined loss once (:meth:`~mtl_hf.weighting.LossWeighter.backward`).
  The activations of all views are alive until that backward.
* ``"sequential"`` (default): for a weighter that allows it
  (:attr:`~mtl_hf.weighting.LossWeighter.separable_by_view`), each view goes forward, its heads'
  terms are taken (:meth:`~mtl_hf.weighting.SeparableWeighter.view_terms`, inside the model's forward,
  where DDP sees the weighter's own parameters used) and back-propagated at once,
  so its activations are freed before the next view runs: memory peaks at the largest view instead of
  their sum, at the same cost in compute. The gradient is the joint one: the total is a sum of
  per-task terms, each from its own loss and the weighter's state, times one factor the losses fix
  (:meth:`~mtl_hf.weighting.SeparableWeighter.terms_scale`, FAMO's normalisation) which is applied to
  the earlier views' gradients once the last view's losses are known. Gradient-based weighters need
  every task's graph at once and keep the joint schedule.

Where the earlier views' gradients lie matters to the memory the step keeps resident: a backward pass
frees its view's activations and allocates the gradients in between, so if those gradients stayed where
the backward allocated them, they would split the freed activation memory into pieces that the next
view's activations do not fit, and the C allocator would grow its heap instead of reusing it (on Linux
with glibc, whose dynamic mmap threshold puts such blocks on the heap after the first step). So the
sequential schedule reserves a gradient buffer per parameter before the first view's forward pass
(below its activations) and, after each view but the last, moves the gradients there: one copy of the
gradients per step, and the freed activation memory is whole again for the next view.

Both back-propagate through ``context.backward`` (``accelerator.backward``: fp16 loss scaling and the
division by the accumulation steps apply). Under DDP every view but the last runs in ``no_sync``, so the
step's gradients are all-reduced once, in the last view's backward of the accumulation window's last
micro-batch (parameters that view does not use, such as the clean view's heads, are all-reduced from
what the earlier views accumulated, since DDP runs with ``find_unused_parameters``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ..weighting import BackwardContext, SeparableWeighter

ViewSchedule = Literal["joint", "sequential"]


@dataclass
class MicroBatchPass:
    """What one micro-batch's forward and backward passes produced.

    Attributes:
        loss: The weighted total (detached under ``sequential``).
        task_losses: ``{task: loss}``.
        weights: The weight of each task in the latest update.
        bool_masked_pos: The mask the masked and visible views used, if any ran.
    """

    loss: torch.Tensor
    task_losses: dict[str, torch.Tensor]
    weights: dict[str, torch.Tensor]
    bool_masked_pos: torch.Tensor | None


def backward_by_view(
    model: torch.nn.Module,
    weighter: SeparableWeighter,
    groups: Sequence[Sequence[str]],
    inputs: dict[str, Any],
    context: BackwardContext,
) -> MicroBatchPass:
    """Forward and back-propagate ``inputs`` one view at a time (``groups``: the tasks of each view, in
    order, from ``MTLModel.view_groups``); ``weighter`` must be separable by view."""
    parameters = list(context.parameters)
    held = [p.grad for p in parameters]  # the window's earlier micro-batches, added back before the last view
    for p in parameters:
        p.grad = None
    # Where the views before the last keep their gradients: taken before any activation is allocated.
    places: list[torch.Tensor] | None = [torch.empty_like(p) for p in parameters] if len(groups) > 1 else None
    weighter.start_forward()
    mask = inputs.get("bool_masked_pos")
    losses: dict[str, torch.Tensor] = {}
    weights: dict[str, torch.Tensor] = {}
    totals: list[torch.Tensor] = []  # each view's sum of terms, before the scale
    scale: torch.Tensor | None = None
    terms = functools.partial(weighter.view_terms, context=context)
    for index, group in enumerate(groups):
        last = index == len(groups) - 1
        with contextlib.nullcontext() if last else context.no_sync():
            out = model(**{**inputs, "tasks": list(group), "bool_masked_pos": mask, "loss_terms": terms})
            mask = out.bool_masked_pos if out.bool_masked_pos is not None else mask
            total = out.loss  # this view's sum of terms
            losses |= out.task_losses or {}
            weights |= out.task_weights or {}
            if total is not None:
                totals.append(total.detach())
            if last:
                scale = weighter.terms_scale(losses, context)  # on every process, losses or not
                _rescale_and_restore(parameters, held, scale)
                if total is not None and scale is not None:
                    total = total * scale.to(total)
            if total is not None:
                context.backward(total)
        if places is not None:
            _move_gradients(parameters, places)
            if index == len(groups) - 2:
                places = None  # the last view's gradients need no move; unused places are freed
    if not totals:
        raise ValueError("no task loss to weight: the batch carried labels for none of the tasks that ran")
    weighted = weighter.scaled(torch.stack(totals).sum(), weights, scale)
    return MicroBatchPass(weighted.loss, losses, weighted.weights, mask)


@torch.no_grad()
def _move_gradients(parameters: Sequence[torch.nn.Parameter], places: Sequence[torch.Tensor]) -> None:
    """Copy each gradient that is not yet in its place there, and make the place the gradient: the
    blocks the backward pass allocated for gradients are freed among its freed activations."""
    for p, place in zip(parameters, places, strict=True):
        if p.grad is not None and p.grad is not place:
            p.grad = place.copy_(p.grad)


@torch.no_grad()
def _rescale_and_restore(
    parameters: Sequence[torch.nn.Parameter],
    held: Sequence[torch.Tensor | None],
    scale: torch.Tensor | None,
) -> None:
    """Multiply this micro-batch's gradients so far by ``scale``, then add back the window's earlier ones."""
    for p, earlier in zip(parameters, held, strict=True):
        if p.grad is not None and scale is not None:
            p.grad.mul_(scale.to(p.grad))
        if earlier is not None:
            p.grad = earlier if p.grad is None else p.grad.add_(earlier)
