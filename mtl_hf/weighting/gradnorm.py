"""GradNorm: gradient normalisation for adaptive loss balancing (Chen, Badrinarayanan, Lee &
Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep Multitask
Networks", ICML 2018, arXiv:1711.02257)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import initialization as init

from .base import WEIGHTERS
from .buffered_adam import BufferedAdam
from .gradient import GradientSource, GradientWeighter, GradientWeighterOptions


@dataclass
class GradNormOptions(GradientWeighterOptions):
    """Options of ``gradnorm``.

    Attributes:
        gradients: Where the gradient norms ``G_i = |grad_W w_i L_i|`` are taken. ``"features"``
            (default): ``W`` is the shared features, the output of the last shared layer (cheap: a backward
            pass through each head). ``"parameters"``: ``W`` is all shared parameters (one backward pass
            per task). The paper uses the last shared layer's weights.
        alpha: Strength of the restoring force towards balanced training rates (default 1.5; 0 asks for
            equal gradient norms).
        lr: Learning rate of the weights' own Adam (default 0.025).
    """

    gradients: GradientSource = "features"
    alpha: float = 1.5
    lr: float = 0.025


@WEIGHTERS.register("gradnorm")
class GradNorm(GradientWeighter):
    """GradNorm (Chen et al. 2018): learnable task weights ``w_i`` (summing to ``T``) are moved so that
    each task's weighted gradient norm ``G_i = w_i |g_i|`` approaches ``mean_j(G_j) * r_i^alpha``, where
    ``r_i`` is the task's inverse training rate ``(L_i / L_i(0)) / mean_j (L_j / L_j(0))``.

    The model is updated with ``sum_i w_i L_i`` for the current weights; the weights are then updated
    with the gradient of ``L_grad = sum_i |G_i - target_i|`` (targets held constant), by their own Adam,
    clipped to stay positive and renormalised to sum to ``T``. ``L_i(0)`` is each task's loss at its
    first combination.

    Buffers: ``task_weights`` (the ``w_i``), ``initial_losses`` (``L_i(0)``, 0 until seen) and the
    Adam moments (``optimizer.*``), all saved with the model.

    A task absent from every process's batches in an accumulation window gets coefficient 0 in that
    update and its learned weight is not updated (the others are renormalised to sum to the number of
    tasks).
    """

    Options = GradNormOptions
    options: GradNormOptions
    task_weights: torch.Tensor
    initial_losses: torch.Tensor

    @classmethod
    def check_options(cls, options: Any, task_names: Sequence[str]) -> None:
        if not 0.0 <= options.alpha < float("inf"):
            raise ValueError(f"weighting.alpha: must be a finite number >= 0, got {options.alpha}")
        if not 0.0 < options.lr < float("inf"):
            raise ValueError(f"weighting.lr: must be a positive number, got {options.lr}")

    def __init__(self, task_names: Sequence[str], options: GradNormOptions) -> None:
        super().__init__(task_names, options)
        t = len(self.task_names)
        self.register_buffer("task_weights", torch.ones(t))
        self.register_buffer("initial_losses", torch.zeros(t))
        self.optimizer = BufferedAdam((t,), lr=options.lr)

    def init_parameters(self) -> None:
        super().init_parameters()
        init.ones_(self.task_weights)
        init.zeros_(self.initial_losses)
        self.optimizer.init_parameters()

    @torch.no_grad()
    def combine(self, gram: torch.Tensor, losses: torch.Tensor, tasks: Sequence[int]) -> torch.Tensor:
        index = torch.tensor(list(tasks), dtype=torch.long, device=self.task_weights.device)
        initial = self.initial_losses[index].double().cpu()
        unset = initial <= 0
        initial = torch.where(unset, losses, initial)
        self.initial_losses[index] = initial.to(self.initial_losses)
        weights = self.task_weights[index].double().cpu()
        norms = gram.diagonal().clamp_min(0.0).sqrt()
        ratios = torch.where(initial > 0, losses / initial, torch.ones_like(losses))
        inverse_rate = ratios / ratios.mean() if ratios.mean() > 0 else torch.ones_like(ratios)
        weighted_norms = weights * norms
        target = weighted_norms.mean() * inverse_rate**self.options.alpha
        # d/dw_i sum_j |w_j n_j - target_j| with the targets constant
        grad = torch.zeros(len(self.task_names), dtype=torch.float64)
        grad[index.cpu()] = torch.sign(weighted_norms - target) * norms
        mask = torch.zeros(len(self.task_names), dtype=torch.bool)
        mask[index.cpu()] = True
        device = self.task_weights.device
        self.optimizer.step(self.task_weights, grad.to(device, self.task_weights.dtype), mask.to(device))
        self.task_weights.clamp_(min=1e-6)
        self.task_weights.mul_(len(self.task_names) / self.task_weights.sum())
        return weights
