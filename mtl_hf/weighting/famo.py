"""FAMO: fast adaptive multitask optimisation (Liu, Liu, Stone & Liu, "FAMO: Fast Adaptive Multitask
Optimization", NeurIPS 2023, arXiv:2306.03792)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from transformers import initialization as init

from .base import WEIGHTERS, BackwardContext, SeparableWeighter, WeighterOptions
from .buffered_adam import BufferedAdam


@dataclass
class FAMOOptions(WeighterOptions):
    """Options of ``famo``.

    Attributes:
        lr: Learning rate of the logits' own Adam (default 0.025, the authors').
        weight_decay: Its L2 regularisation ``gamma`` of the logits (default 1e-3).
        min_losses: ``{task_name: lower bound of its loss}`` (``L_i*``, default 0); FAMO balances the
            log of ``L_i - L_i*``.
        eps: Added to ``L_i - L_i*`` before the logarithm (default 1e-8).
        update: Which losses ``D(t+1)`` the logits learn from: ``"next_batch"`` (default; the next
            step's, at no extra cost) or ``"same_batch"`` (the step's own micro-batches re-evaluated
            after the update, as the authors' code does; one more forward pass per step).
    """

    lr: float = 0.025
    weight_decay: float = 1e-3
    min_losses: dict[str, float] = field(default_factory=dict)
    eps: float = 1e-8
    update: Literal["next_batch", "same_batch"] = "next_batch"


@WEIGHTERS.register("famo")
class FAMO(SeparableWeighter):
    """FAMO (Liu et al. 2023): balances the tasks' rates of log-loss decrease in O(1) per step.

    With task logits ``xi``, ``z = softmax(xi)`` and ``D_i = L_i - L_i* + eps``, the model is updated
    along the gradient of ``sum_i z_i log D_i / c`` with ``c = sum_j z_j / D_j`` (held constant), i.e. of
    ``sum_i w_i L_i`` with weights ``w_i = z_i / (c D_i)`` (summing to 1; the reported weights). After
    each optimizer step the logits move by one step of their own Adam along
    ``J_softmax(xi)^T (log D(t) - log D(t+1))``: tasks whose loss fell fastest lose weight.

    By default ``D(t+1)`` is the loss of the next step (on the next batch, as the O(1) method allows),
    so the logits lag the model by one step; ``update: same_batch`` re-evaluates the step's own
    micro-batches after the update, as the authors' code does, for one more forward pass per step.
    Weights use the losses averaged over processes, so every process weighs alike. Buffers ``logits``, ``previous_losses`` and the Adam moments
    (``optimizer.*``) are saved with the model.

    A task absent from a step has no term; the normalisation ``c`` runs over the tasks present on any
    process (with several processes, ``D_i`` is the mean over the processes that had task ``i``), and
    the logits learn only from tasks present in two consecutive steps.
    """

    Options = FAMOOptions
    options: FAMOOptions
    logits: torch.Tensor
    previous_losses: torch.Tensor
    has_previous: torch.Tensor

    @classmethod
    def check_options(cls, options: Any, task_names: Sequence[str]) -> None:
        if not 0.0 < options.lr < math.inf:
            raise ValueError(f"weighting.lr: must be a positive number, got {options.lr}")
        if not 0.0 <= options.weight_decay < math.inf:
            raise ValueError(f"weighting.weight_decay: must be a number >= 0, got {options.weight_decay}")
        if not 0.0 < options.eps < math.inf:
            raise ValueError(f"weighting.eps: must be a positive number, got {options.eps}")
        for name in options.min_losses:
            if name not in task_names:
                raise ValueError(
                    f"weighting.min_losses.{name}: no task named {name!r}; tasks are {', '.join(task_names)}"
                )

    def __init__(self, task_names: Sequence[str], options: FAMOOptions) -> None:
        super().__init__(task_names, options)
        t = len(self.task_names)
        self.register_buffer("logits", torch.zeros(t))
        self.register_buffer("previous_losses", torch.zeros(t))
        self.register_buffer("has_previous", torch.zeros(t, dtype=torch.bool))
        self.optimizer = BufferedAdam((t,), lr=options.lr, weight_decay=options.weight_decay)
        self.min_losses = [float(options.min_losses.get(name, 0.0)) for name in self.state_names]
        self.needs_losses_after_step = options.update == "same_batch"
        self._ratios: dict[str, torch.Tensor] = {}  # z_i / D_i of this forward pass's tasks
        self._means: dict[str, torch.Tensor] = {}  # their losses averaged over processes, if several

    def init_parameters(self) -> None:
        init.zeros_(self.logits)
        init.zeros_(self.previous_losses)
        init.zeros_(self.has_previous)
        self.optimizer.init_parameters()

    def _shifted(self, index: int, loss: torch.Tensor) -> torch.Tensor:
        return loss - self.min_losses[index] + self.options.eps

    def start_forward(self) -> None:
        self._ratios = {}
        self._means = {}

    def view_terms(
        self, losses: Mapping[str, torch.Tensor], context: BackwardContext | None = None
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """With several processes, first one collective: each task's loss averaged over the processes
        whose batch had it, for every task any of them had in this view (a task absent here still
        counts in the normalisation :meth:`terms_scale`, so that every process scales alike)."""
        if context is not None and context.num_processes > 1:
            self._share_losses(losses, context)
        return super().view_terms(losses, context)

    def _share_losses(self, losses: Mapping[str, torch.Tensor], context: BackwardContext) -> None:
        t = len(self.task_names)
        device = self.logits.device
        local = torch.zeros(2 * t, dtype=torch.float64, device=device)
        for name, loss in losses.items():
            i = self.task_index(name)
            local[i] = loss.detach().double().to(device)
            local[t + i] = 1.0
        shared = context.reduce(local)  # means; their ratio is the mean over the processes with the task
        z = torch.softmax(self.logits.double(), dim=0)
        for i in torch.nonzero(shared[t:] > 0).flatten().tolist():
            name = self.state_names[i]
            self._means[name] = shared[i] / shared[t + i]
            self._ratios[name] = z[i] / self._shifted(i, self._means[name])

    def task_weight(
        self, name: str, loss: torch.Tensor, context: BackwardContext | None = None
    ) -> torch.Tensor:
        """``z_i / D_i`` (the normalisation ``1 / c`` is :meth:`terms_scale`); with several processes
        ``D_i`` is the mean loss of the processes that had the task, so every process weighs alike."""
        i = self.task_index(name)
        value = self._means.get(name)
        if value is None:
            value = loss.detach().double()
        ratio = torch.softmax(self.logits.double(), dim=0)[i] / self._shifted(i, value)
        self._ratios[name] = ratio
        return ratio.to(loss)

    def terms_scale(
        self, losses: Mapping[str, torch.Tensor], context: BackwardContext | None = None
    ) -> torch.Tensor | None:
        """``1 / c`` with ``c = sum_j z_j / D_j`` over the forward pass's tasks: those of ``losses`` and,
        with several processes, those any process had."""
        if not self._ratios:
            return None
        return 1.0 / torch.stack(list(self._ratios.values())).sum()

    def backward(
        self, losses: Mapping[str, torch.Tensor], total: torch.Tensor, context: BackwardContext
    ) -> dict[str, torch.Tensor]:
        if context.num_processes > 1:  # the model's forward weighed by this process's losses alone
            combined = self.combine(losses, context)  # on every process: it exchanges the losses
            if losses:
                total = combined.loss
        context.backward(total)
        return dict(self.last_weights)

    @torch.no_grad()
    def on_step_end(self, losses: Mapping[str, float]) -> None:
        if self.needs_losses_after_step:  # same_batch: these are D(t); D(t+1) comes after the update
            self.has_previous.zero_()
        self._learn(losses)

    @torch.no_grad()
    def on_losses_after_step(self, losses: Mapping[str, float]) -> None:
        self._learn(losses)

    def _learn(self, losses: Mapping[str, float]) -> None:
        """Move the logits from ``previous_losses`` to ``losses`` (where both are known), then keep
        ``losses`` as the previous ones."""
        t = len(self.task_names)
        current = self.previous_losses.clone().double()
        seen = torch.zeros(t, dtype=torch.bool, device=self.logits.device)
        for name, value in losses.items():
            if not math.isfinite(float(value)):
                continue  # a skipped (overflowed) step teaches nothing
            i = self.task_index(name)
            current[i] = float(value)
            seen[i] = True
        usable = seen & self.has_previous
        if bool(usable.any()):
            delta = torch.zeros(t, dtype=torch.float64, device=self.logits.device)
            for i in torch.nonzero(usable).flatten().tolist():
                before = self._shifted(i, self.previous_losses[i].double())
                after = self._shifted(i, current[i])
                delta[i] = torch.log(before) - torch.log(after)
            z = torch.softmax(self.logits.double(), dim=0)
            grad = z * (delta - (z * delta).sum())  # J_softmax^T delta (J is symmetric)
            self.optimizer.step(self.logits, grad.to(self.logits.dtype))
        self.previous_losses.copy_(current.to(self.previous_losses.dtype))
        self.has_previous |= seen
