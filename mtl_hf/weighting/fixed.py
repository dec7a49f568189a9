"""Fixed task weights, the paper's ``L = sum_i lambda_i L_i``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .base import WEIGHTERS, BackwardContext, SeparableWeighter, WeighterOptions


@dataclass
class FixedWeightsOptions(WeighterOptions):
    """Options of ``fixed``.

    Attributes:
        weights: ``{task_name: lambda}``; a task without an entry gets 1.0. Naming a task the model does
            not have is an error.
    """

    weights: dict[str, float] = field(default_factory=dict)


@WEIGHTERS.register("fixed")
class FixedWeights(SeparableWeighter):
    """``L = sum_i lambda_i L_i`` over the tasks present in the step, with constant ``lambda_i``.

    A task absent from a step (no labelled sample in its batch) has no term; the others keep their weights.
    """

    Options = FixedWeightsOptions
    options: FixedWeightsOptions

    @classmethod
    def check_options(cls, options: Any, task_names: Sequence[str]) -> None:
        for name, value in options.weights.items():
            if name not in task_names:
                raise ValueError(
                    f"weighting.weights.{name}: no task named {name!r}; tasks are {', '.join(task_names)}"
                )
            if not value >= 0 or value == float("inf"):
                raise ValueError(f"weighting.weights.{name}: must be a finite number >= 0, got {value}")

    def __init__(self, task_names: Sequence[str], options: FixedWeightsOptions) -> None:
        super().__init__(task_names, options)
        self.lambdas = {name: float(options.weights.get(name, 1.0)) for name in self.task_names}

    def task_weight(
        self, name: str, loss: torch.Tensor, context: BackwardContext | None = None
    ) -> torch.Tensor:
        return loss.new_tensor(self.lambdas[name])
