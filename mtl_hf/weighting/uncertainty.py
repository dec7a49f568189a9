"""Uncertainty weighting (Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh
Losses for Scene Geometry and Semantics", CVPR 2018, arXiv:1705.07115)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from transformers import initialization as init

from .base import WEIGHTERS, BackwardContext, SeparableWeighter, WeighterOptions

Form = Literal["regression", "classification"]


@dataclass
class UncertaintyWeightingOptions(WeighterOptions):
    """Options of ``uncertainty``.

    Attributes:
        default_form: The likelihood form of tasks not named in ``forms``: ``"regression"`` (default;
            Gaussian, ``L_i / (2 sigma_i^2) + log sigma_i``) or ``"classification"`` (scaled softmax,
            ``L_i / sigma_i^2 + log sigma_i``).
        forms: ``{task_name: form}`` overriding ``default_form`` per task.
        init_log_variance: Initial ``s_i = log sigma_i^2`` of every task (default 0).
    """

    default_form: Form = "regression"
    forms: dict[str, Form] = field(default_factory=dict)
    init_log_variance: float = 0.0


@WEIGHTERS.register("uncertainty")
class UncertaintyWeighting(SeparableWeighter):
    """Homoscedastic-uncertainty weighting (Kendall et al. 2018).

    Each task has a learnable log-variance ``s_i = log sigma_i^2`` (parameter ``log_variances``, trained
    by the model's optimizer with everything else); the loss is

        regression:      L = sum_i 0.5 * exp(-s_i) * L_i + 0.5 * s_i
        classification:  L = sum_i       exp(-s_i) * L_i + 0.5 * s_i

    At the optimum ``sigma_i^2 = L_i`` (regression) or ``2 L_i`` (classification), so a task whose loss
    stays high (noisy) is down-weighted. Reported weights: ``0.5 exp(-s_i)`` or ``exp(-s_i)``. Keep
    ``log_variances`` out of weight decay, which would pull them towards 0.

    A task absent from a step has no term: neither its loss nor its regulariser ``s_i``, so its
    log-variance gets no gradient from that step (a zero one from a DDP process without it).
    """

    Options = UncertaintyWeightingOptions
    options: UncertaintyWeightingOptions

    @classmethod
    def check_options(cls, options: Any, task_names: Sequence[str]) -> None:
        for name in options.forms:
            if name not in task_names:
                raise ValueError(
                    f"weighting.forms.{name}: no task named {name!r}; tasks are {', '.join(task_names)}"
                )

    def __init__(self, task_names: Sequence[str], options: UncertaintyWeightingOptions) -> None:
        super().__init__(task_names, options)
        self.log_variances = nn.Parameter(
            torch.full((len(self.task_names),), float(options.init_log_variance))
        )
        self.factors = [
            0.5 if options.forms.get(name, options.default_form) == "regression" else 1.0
            for name in self.state_names
        ]

    def init_parameters(self) -> None:
        init.constant_(self.log_variances, self.options.init_log_variance)

    def _weight(self, name: str, loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(factor * exp(-s_i), s_i)`` of task ``name``, with their graphs to ``log_variances``."""
        i = self.task_index(name)
        s = self.log_variances[i].to(loss.dtype)
        return self.factors[i] * torch.exp(-s), s

    def task_weight(
        self, name: str, loss: torch.Tensor, context: BackwardContext | None = None
    ) -> torch.Tensor:
        return self._weight(name, loss)[0].detach()

    def task_term(
        self, name: str, loss: torch.Tensor, context: BackwardContext | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        weight, s = self._weight(name, loss)
        return weight.detach(), weight * loss + 0.5 * s
