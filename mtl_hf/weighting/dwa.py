"""Dynamic weight average (Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention",
CVPR 2019, arXiv:1803.10704)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import initialization as init

from .base import WEIGHTERS, BackwardContext, SeparableWeighter, WeighterOptions


@dataclass
class DynamicWeightAverageOptions(WeighterOptions):
    """Options of ``dwa``.

    Attributes:
        temperature: Softmax temperature ``T`` (default 2.0, the paper's); larger is more uniform.
    """

    temperature: float = 2.0


@WEIGHTERS.register("dwa")
class DynamicWeightAverage(SeparableWeighter):
    """DWA (Liu et al. 2019): weights from the rate at which each task's loss fell over the last epochs,

        r_i = L_i(t-1) / L_i(t-2),    lambda_i(t) = K exp(r_i / T) / sum_j exp(r_j / T)

    with ``L_i(t)`` the mean loss of epoch ``t`` and ``K`` the number of tasks; weights are 1 until two
    epochs have ended. A task that slows down gets more weight.

    Buffers: ``loss_history`` ``(2, K)`` (the last two epochs' mean losses, oldest first; 0 where
    unknown) and ``num_epochs``, fed by :meth:`on_epoch_end` and saved with the model.

    A task absent from a step has no term; its epoch mean loss is taken over the steps that had it, and
    a task absent for a whole epoch keeps its previous mean in the history.
    """

    Options = DynamicWeightAverageOptions
    options: DynamicWeightAverageOptions
    loss_history: torch.Tensor
    num_epochs: torch.Tensor

    @classmethod
    def check_options(cls, options: Any, task_names: Sequence[str]) -> None:
        if not 0.0 < options.temperature < math.inf:
            raise ValueError(f"weighting.temperature: must be a positive number, got {options.temperature}")

    def __init__(self, task_names: Sequence[str], options: DynamicWeightAverageOptions) -> None:
        super().__init__(task_names, options)
        self.register_buffer("loss_history", torch.zeros(2, len(self.task_names)))
        self.register_buffer("num_epochs", torch.zeros((), dtype=torch.long))

    def init_parameters(self) -> None:
        init.zeros_(self.loss_history)
        init.zeros_(self.num_epochs)

    def all_weights(self) -> torch.Tensor:
        """``(K,)`` the weights of every task for the current epoch."""
        older, newer = self.loss_history[0], self.loss_history[1]
        known = (older > 0) & (newer > 0)
        if int(self.num_epochs) < 2 or not bool(known.any()):
            return torch.ones_like(newer)
        rates = torch.where(known, newer / older.clamp_min(1e-30), torch.ones_like(newer))
        return len(self.task_names) * torch.softmax(rates / self.options.temperature, dim=0)

    def task_weight(
        self, name: str, loss: torch.Tensor, context: BackwardContext | None = None
    ) -> torch.Tensor:
        return self.all_weights()[self.task_index(name)].to(loss)

    @torch.no_grad()
    def on_epoch_end(self, epoch: int, mean_losses: Mapping[str, float]) -> None:
        newest = self.loss_history[1].clone()
        for name, value in mean_losses.items():
            if math.isfinite(float(value)):
                newest[self.task_index(name)] = float(value)
        self.loss_history[0] = self.loss_history[1]
        self.loss_history[1] = newest
        self.num_epochs += 1
