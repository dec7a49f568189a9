"""Gradient-based weighters: the machinery they share (per-task gradients, processes, accumulation).

Every gradient-based method here (PCGrad, MGDA, CAGrad, Nash-MTL, GradNorm) decides its update from
the tasks' gradients on what they share, and every one of them updates along a linear combination
``d = sum_i c_i g_i`` of those gradients. The coefficients depend only on the Gram matrix
``K_ij = <g_i, g_j>`` (and, for some, the losses and the method's state). So a method implements one
function, :meth:`GradientWeighter.combine` (Gram matrix -> coefficients), and this base class does the
rest, identically for all of them:

``gradients: parameters`` (the papers' definition)
    The per-task gradients ``g_i`` are those of the shared parameters. The loop runs the forward pass in
    :meth:`~GradientWeighter.forward_context` (DDP's ``no_sync``), and :meth:`~GradientWeighter.backward`
    runs one backward pass per task through ``context.backward`` into a per-task gradient buffer of
    every trainable parameter. Over an accumulation window these buffers add up (still local). On the
    window's last micro-batch (``context.sync_gradients``) the buffers of all tasks (and the window's
    losses) are averaged across processes in **one** ``context.reduce`` call -- the only collective of
    the step -- so every process then computes the same Gram matrix and coefficients from the
    gradients of the whole global batch, and sets ``.grad = sum_i c_i g_i`` for every parameter. The
    buffers are allocated once and reused: ``.grad`` tensors are views into them, valid until the
    next step's first backward.
    The combination is thus made once per optimizer step, and a run on ``n`` processes with ``k``
    accumulation steps makes the same update as one process on the same global batch.

``gradients: features`` (MGDA-UB's upper bound, Sener & Koltun 2018, Section 3.3)
    The per-task gradients are those of the shared features ``context.shared_features`` (the backbone
    outputs the heads read), which only costs a backward pass through the heads per task. The Gram
    matrices of all processes are averaged with one small ``context.reduce`` (``T x T`` numbers) and
    rescaled to the Gram matrix of the global batch's features, then ``sum_i c_i L_i`` is
    back-propagated once through ``context.backward`` (DDP all-reduces as usual). The combination is
    made once per micro-batch.

In both modes every parameter receives the gradient of ``sum_i c_i L_i`` -- task-specific ones (heads)
included, scaled by their task's coefficient as in the reference implementations of MGDA and Nash-MTL
-- and ``c`` is what :meth:`~LossWeighter.backward` returns and training logs as the task weights.

fp16 loss scaling: gradients obtained through a scaled backward are divided by the scale before the
Gram matrix is formed; ``.grad`` keeps the scaled values, which the optimizer's unscale step expects. A
step whose gradients overflowed (non-finite Gram matrix or update) leaves the method's state as it was
(coefficients of 1 are used when the Gram matrix itself is not finite), and the scaler skips it as it
would any other.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from transformers import initialization as init

from .base import BackwardContext, LossWeighter, WeighterOptions

GradientSource = Literal["parameters", "features"]


@dataclass
class GradientWeighterOptions(WeighterOptions):
    """Options every gradient-based weighter has.

    Attributes:
        gradients: ``"parameters"`` (default): compare the tasks' gradients on all shared parameters, as
            the papers define the methods (one backward pass per task). ``"features"``: compare their
            gradients on the shared features instead (MGDA-UB's bound; one backward pass in all, plus a
            pass through each head), needs ``BackwardContext.shared_features``.
    """

    gradients: GradientSource = "parameters"


class _Window:
    """Per-task gradient buffers of one accumulation window (``gradients: parameters``).

    One flat buffer holds ``T`` rows of every trainable parameter's gradient (shared parameters first)
    followed by the window's per-task loss sums and micro-batch counts, so a single collective averages
    all of it.
    """

    def __init__(self, params: list[nn.Parameter], num_shared_params: int, num_tasks: int) -> None:
        self.key = _layout_key(params)
        self.params = params
        self.spans: list[tuple[int, int]] = []
        offset = 0
        for p in params:
            self.spans.append((offset, offset + p.numel()))
            offset += p.numel()
        self.numel = offset
        self.shared_numel = self.spans[num_shared_params - 1][1] if num_shared_params else 0
        self.num_tasks = num_tasks
        self.buffer = torch.zeros(
            num_tasks * offset + 2 * num_tasks, dtype=params[0].dtype, device=params[0].device
        )
        self.rows = self.buffer[: num_tasks * offset].view(num_tasks, offset)
        self.loss_sums = self.buffer[num_tasks * offset : num_tasks * offset + num_tasks]
        self.loss_counts = self.buffer[num_tasks * offset + num_tasks :]
        self.views = [
            [self.rows[i, s:e].view_as(p) for p, (s, e) in zip(params, self.spans, strict=True)]
            for i in range(num_tasks)
        ]
        self.open = False


class GradientWeighter(LossWeighter):
    """Base class of weighters that choose the update from per-task gradients (see the module docstring).

    Subclasses implement :meth:`combine`. State they keep must live in buffers (saved with the model)
    and change only inside :meth:`combine`, which every process calls with identical inputs.

    Buffers:
        coefficients: ``(T,)`` the coefficients of the latest combination (1 before the first); they are
            this weighter's reported weights and weigh the ``loss`` the model returns.
        num_combinations: How many combinations were made (seeds random choices, e.g. PCGrad's order).
    """

    Options = GradientWeighterOptions
    options: GradientWeighterOptions
    coefficients: torch.Tensor
    num_combinations: torch.Tensor

    def __init__(self, task_names: Sequence[str], options: GradientWeighterOptions) -> None:
        super().__init__(task_names, options)
        self.register_buffer("coefficients", torch.ones(len(self.task_names)))
        self.register_buffer("num_combinations", torch.zeros((), dtype=torch.long))
        self._window: _Window | None = None

    def init_parameters(self) -> None:
        init.ones_(self.coefficients)
        init.zeros_(self.num_combinations)

    @abstractmethod
    def combine(self, gram: torch.Tensor, losses: torch.Tensor, tasks: Sequence[int]) -> torch.Tensor:
        """Coefficients ``c`` (``(t,)`` float64) of the update ``sum_i c_i g_i``.

        Args:
            gram: ``(t, t)`` float64 CPU Gram matrix of the present tasks' gradients (of the mean loss
                over the global batch, unscaled).
            losses: ``(t,)`` float64 their losses (means over the global batch).
            tasks: Their indices in the per-task state vectors (:attr:`~LossWeighter.state_names`).
        """

    def weights(self, losses: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # Copies: ``backward`` updates the buffer in place, and under DDP with unused-parameter detection
        # the backward of any output also reaches the model's total, whose graph holds these weights.
        return {
            name: self.coefficients[self.task_index(name)].clone().to(device=loss.device, dtype=loss.dtype)
            for name, loss in losses.items()
        }

    def forward_context(self, context: BackwardContext) -> AbstractContextManager[Any]:
        if self.options.gradients == "parameters":
            return context.no_sync()
        return contextlib.nullcontext()

    def backward(
        self, losses: Mapping[str, torch.Tensor], total: torch.Tensor, context: BackwardContext
    ) -> dict[str, torch.Tensor]:
        if self.options.gradients == "features":
            self._backward_features(losses, total, context)
        else:
            self._backward_parameters(losses, context)
        return dict(self.last_weights)

    # -- gradients: parameters ---------------------------------------------------------------------
    def _window_for(self, context: BackwardContext) -> _Window:
        shared = [p for p in context.shared_parameters if p.requires_grad]
        if not shared:
            raise ValueError(
                f"weighting {self.registered_name!r} with gradients='parameters' needs "
                "BackwardContext.shared_parameters (model.shared_parameters())"
            )
        if not context.parameters:
            raise ValueError(
                f"weighting {self.registered_name!r} with gradients='parameters' needs "
                "BackwardContext.parameters (every trainable parameter of the model)"
            )
        shared_ids = {id(p) for p in shared}
        params = shared + [p for p in context.parameters if p.requires_grad and id(p) not in shared_ids]
        window = self._window
        if window is None or window.key != _layout_key(params):
            kinds = {(p.dtype, p.device) for p in params}
            if len(kinds) > 1:
                raise ValueError(
                    f"weighting {self.registered_name!r} with gradients='parameters' needs all trainable "
                    f"parameters on one device with one dtype, got {sorted(map(str, kinds))}"
                )
            window = self._window = _Window(params, len(shared), len(self.task_names))
        if not window.open:
            window.buffer.zero_()
            window.open = True
        return window

    def _backward_parameters(self, losses: Mapping[str, torch.Tensor], context: BackwardContext) -> None:
        window = self._window_for(context)
        names = list(losses)
        for k, name in enumerate(names):
            i = self.task_index(name)
            for p, view in zip(window.params, window.views[i], strict=True):
                p.grad = view  # backward adds this task's gradient into its row, in place
            context.backward(losses[name], retain_graph=k < len(names) - 1)
            window.loss_sums[i] += losses[name].detach().to(window.buffer.dtype)
            window.loss_counts[i] += 1
        for p in window.params:
            p.grad = None
        if not context.sync_gradients:
            return
        window.open = False
        reduced = context.reduce(window.buffer)
        t, n = window.num_tasks, window.numel
        grads = reduced[: t * n].view(t, n)
        sums, counts = reduced[t * n : t * n + t], reduced[t * n + t :]
        scale = context.loss_scale()
        snapshot = self._snapshot() if scale != 1.0 else None
        shared = grads[:, : window.shared_numel]
        gram = (shared @ shared.T).double().cpu() / scale**2
        present = counts.double().cpu() > 0
        if not bool(present.any()):  # no process had a task loss in this window: no update
            self.last_weights = {}
            return
        coefficients = self._combine(gram, _mean(sums, counts), present)
        # A parameter no task reached keeps grad None (as after a plain backward); a non-finite
        # gradient counts as received, so the loss scaler sees it.
        norms = torch.stack(torch._foreach_norm([grads[i, s:e] for i in range(t) for s, e in window.spans]))
        received = (norms.view(t, -1) != 0).any(dim=0).tolist()
        # The update sum_i c_i g_i, written in place over the first present task's row (no allocation).
        tasks = [int(i) for i in torch.nonzero(present).flatten()]
        direction = grads[tasks[0]].mul_(float(coefficients[tasks[0]]))
        for i in tasks[1:]:
            direction.add_(grads[i], alpha=float(coefficients[i]))
        if snapshot is not None and not bool(torch.isfinite(direction).all()):
            self._restore(snapshot)  # an overflowed step, which the scaler skips, teaches nothing
        for p, (s, e), got in zip(window.params, window.spans, received, strict=True):
            p.grad = direction[s:e].view_as(p) if got else None

    # -- gradients: features -----------------------------------------------------------------------
    def _backward_features(
        self, losses: Mapping[str, torch.Tensor], total: torch.Tensor | None, context: BackwardContext
    ) -> None:
        features = list(context.shared_features)
        if losses and not features:
            raise ValueError(
                f"weighting {self.registered_name!r} with gradients='features' needs "
                "BackwardContext.shared_features (the backbone outputs of this forward pass)"
            )
        if not all(f.requires_grad for f in features):
            raise ValueError(
                "BackwardContext.shared_features must be part of the autograd graph (requires_grad)"
            )
        scale = context.loss_scale()
        snapshot = self._snapshot() if scale != 1.0 else None
        num_tasks = len(self.task_names)
        payload = torch.zeros(
            num_tasks * num_tasks + 2 * num_tasks, dtype=torch.float64, device=self.coefficients.device
        )
        if losses:
            rows = []
            for name in losses:
                loss = losses[name] * scale if scale != 1.0 else losses[name]
                grads = torch.autograd.grad(loss, features, retain_graph=True, allow_unused=True)
                if all(g is None for g in grads):
                    raise ValueError(
                        f"task {name!r}: its loss does not depend on BackwardContext.shared_features; they "
                        "must include the backbone output every head reads (SharedFeatureRecorder on the heads)"
                    )
                flat = torch.cat(
                    [
                        (g if g is not None else torch.zeros_like(f)).reshape(-1).float()
                        for g, f in zip(grads, features, strict=True)
                    ]
                )
                rows.append(flat / scale if scale != 1.0 else flat)
            stacked = torch.stack(rows)
            local_gram = (stacked @ stacked.T).double()
            index = torch.tensor([self.task_index(n) for n in losses], device=local_gram.device)
            payload[: num_tasks * num_tasks].view(num_tasks, num_tasks)[index[:, None], index[None, :]] = (
                local_gram
            )
            payload[num_tasks * num_tasks + index] = torch.stack(
                [loss.detach().double() for loss in losses.values()]
            )
            payload[num_tasks * num_tasks + num_tasks + index] = 1.0
        reduced = context.reduce(payload).cpu()
        # Each process's loss is its local mean, so the global loss's feature gradient is the
        # concatenation of the local ones divided by the number of processes.
        gram = reduced[: num_tasks * num_tasks].view(num_tasks, num_tasks) / context.num_processes
        sums = reduced[num_tasks * num_tasks : num_tasks * num_tasks + num_tasks]
        counts = reduced[num_tasks * num_tasks + num_tasks :]
        if bool((counts > 0).any()):  # every process combines alike, whether it had losses or not
            coefficients = self._combine(gram, _mean(sums, counts), counts > 0)
        else:
            self.last_weights = {}
        if losses:
            weighted = torch.stack(
                [
                    coefficients[self.task_index(n)].to(loss.device, loss.dtype) * loss
                    for n, loss in losses.items()
                ]
            ).sum()
            context.backward(weighted)
        elif total is not None:
            # No task loss on this process: back-propagate the model's zero total, so that DDP's
            # all-reduce runs here as on the other processes (the heads get a zero gradient).
            context.backward(total)
        if snapshot is not None:
            written = [
                p.grad for p in (context.parameters or context.shared_parameters) if p.grad is not None
            ]
            if written and not bool(torch.stack([torch.isfinite(g).all() for g in written]).all()):
                self._restore(snapshot)  # the backward overflowed: the scaler skips this step

    # -- shared ------------------------------------------------------------------------------------
    def _snapshot(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return {k: v.detach().clone() for k, v in self.state_dict().items()}, dict(self.last_weights)

    def _restore(self, snapshot: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]) -> None:
        self.load_state_dict(snapshot[0])
        self.last_weights = snapshot[1]

    def _combine(self, gram: torch.Tensor, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Coefficients for all tasks (0 for absent ones); updates the buffers and ``last_weights``."""
        tasks = [int(i) for i in torch.nonzero(present).flatten()]
        index = torch.tensor(tasks, dtype=torch.long)
        sub_gram = gram.double()[index][:, index]
        sub_losses = losses.double().cpu()[index]
        full = torch.zeros(len(self.task_names), dtype=torch.float64)
        if torch.isfinite(sub_gram).all() and torch.isfinite(sub_losses).all():
            coefficients = self.combine(sub_gram, sub_losses, tasks).double()
            if coefficients.shape != (len(tasks),) or not torch.isfinite(coefficients).all():
                raise RuntimeError(
                    f"weighting {self.registered_name!r} produced invalid coefficients {coefficients.tolist()}"
                )
            with torch.no_grad():
                self.coefficients[index.to(self.coefficients.device)] = coefficients.to(self.coefficients)
                self.num_combinations += 1
        else:  # overflowed fp16 gradients: let the loss scaler skip this step
            coefficients = torch.ones(len(tasks), dtype=torch.float64)
        full[index] = coefficients
        self.last_weights = {self.state_names[i]: self.coefficients[i].detach().clone() for i in tasks}
        return full


def _layout_key(params: Sequence[nn.Parameter]) -> tuple[Any, ...]:
    return (*(id(p) for p in params), params[0].device, params[0].dtype)


def _mean(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    sums, counts = sums.double().cpu(), counts.double().cpu()
    return torch.where(counts > 0, sums / counts.clamp_min(1.0), torch.zeros_like(sums))
