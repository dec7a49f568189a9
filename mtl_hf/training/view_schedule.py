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

Where the views' gradients lie matters to the memory the step keeps resident: a backward pass frees
its view's activations and, if it allocates the gradients, puts them in between, where they split the
freed activation memory into pieces that the next view's activations do not fit, so the C allocator
grows its heap instead of reusing it (on Linux with glibc, whose dynamic mmap threshold puts such
blocks on the heap after the first step). So the sequential schedule gives every parameter a zero
gradient before the first view's forward pass, which the backward passes accumulate into in place and
never reallocate: a buffer per parameter, kept from step to step (allocated once, at the first step,
so the heap's layout stays the same from one step to the next; a window's later micro-batches, whose
earlier gradients lie in those buffers, get new zeros). A gradient that no view before the last wrote
(its version counter unchanged) is dropped again before the last view, so a parameter that gets no
gradient in the step ends with none, as in the joint schedule (AdamW then leaves it alone).

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
from torch.utils.weak import WeakIdKeyDictionary

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
    # The views' gradients, allocated before any activation is: the backward passes add into them.
    # Kept buffers only when no earlier micro-batch's gradient is in them (the window's first).
    zeros = _zero_gradients(parameters, reuse=all(g is None for g in held)) if len(groups) > 1 else None
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
                if zeros is not None:
                    _drop_unwritten(parameters, zeros)
                scale = weighter.terms_scale(losses, context)  # on every process, losses or not
                _rescale_and_restore(parameters, held, scale)
                if total is not None and scale is not None:
                    total = total * scale.to(total)
            if total is not None:
                context.backward(total)
    if not totals:
        raise ValueError("no task loss to weight: the batch carried labels for none of the tasks that ran")
    weighted = weighter.scaled(torch.stack(totals).sum(), weights, scale)
    return MicroBatchPass(weighted.loss, losses, weighted.weights, mask)


_BUFFERS = WeakIdKeyDictionary()
"""Each parameter's gradient buffer, kept from step to step (freed with the parameter)."""


@torch.no_grad()
def _zero_gradients(parameters: Sequence[torch.nn.Parameter], reuse: bool) -> list[tuple[torch.Tensor, int]]:
    """Give each parameter a zero gradient: its kept buffer, zeroed, if ``reuse`` (no gradient of an
    earlier micro-batch lies in it), else a new one. Return each with its version counter as it is now."""
    zeros = []
    for p in parameters:
        buffer = _BUFFERS.get(p) if reuse else None
        if buffer is None or buffer.shape != p.shape or buffer.dtype != p.dtype or buffer.device != p.device:
            buffer = torch.zeros_like(p)
            if reuse:
                _BUFFERS[p] = buffer
        else:
            buffer.zero_()
        p.grad = buffer
        zeros.append((buffer, buffer._version))
    return zeros


@torch.no_grad()
def _drop_unwritten(
    parameters: Sequence[torch.nn.Parameter], zeros: Sequence[tuple[torch.Tensor, int]]
) -> None:
    """Set back to ``None`` each gradient that is still the untouched zero :func:`_zero_gradients` gave."""
    for p, (zero, version) in zip(parameters, zeros, strict=True):
        if p.grad is zero and zero._version == version:
            p.grad = None


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
