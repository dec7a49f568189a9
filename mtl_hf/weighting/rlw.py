"""Random loss weighting (Lin, Ye, Xu, Shi & Zhang, "Reasonable Effectiveness of Random Weighting: A
Litmus Test for Multi-Task Learning", TMLR 2022, arXiv:2111.10603)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from transformers import initialization as init

from .base import WEIGHTERS, BackwardContext, SeparableWeighter, WeighterOptions


@dataclass
class RandomLossWeightingOptions(WeighterOptions):
    """Options of ``rlw``.

    Attributes:
        distribution: How a step's weights are drawn: ``"normal"`` (default; softmax of standard normal
            draws, the paper's main choice), ``"uniform"`` (softmax of U(0, 1) draws) or ``"dirichlet"``
            (Dirichlet(1, ..., 1), uniform on the simplex).
        seed: The weights of a training step are drawn from ``(seed, step)``, so every process and a
            resumed run draw the same weights.
    """

    distribution: Literal["normal", "uniform", "dirichlet"] = "normal"
    seed: int = 0


@WEIGHTERS.register("rlw")
class RandomLossWeighting(SeparableWeighter):
    """RLW (Lin et al. 2022): fresh random weights, summing to 1 over all tasks, at every training
    forward pass. In evaluation mode the expected weights ``1/K`` are used, so validation losses are
    deterministic. Buffer ``num_draws`` (saved with the model) counts the draws.

    A task absent from a step has no term; the weights drawn for the others are used as drawn (not
    renormalised), so such a step's total is smaller.
    """

    Options = RandomLossWeightingOptions
    options: RandomLossWeightingOptions
    num_draws: torch.Tensor

    @classmethod
    def check_options(cls, options: Any, task_names: Sequence[str]) -> None:
        if options.seed < 0:
            raise ValueError(f"weighting.seed: must be >= 0, got {options.seed}")

    def __init__(self, task_names: Sequence[str], options: RandomLossWeightingOptions) -> None:
        super().__init__(task_names, options)
        self.register_buffer("num_draws", torch.zeros((), dtype=torch.long))
        self.current = torch.full((len(self.task_names),), 1.0 / len(self.task_names), dtype=torch.float64)
        """The weights of the current forward pass (drawn by :meth:`start_forward`)."""

    def init_parameters(self) -> None:
        init.zeros_(self.num_draws)

    def draw(self, index: int) -> torch.Tensor:
        """The weights of all tasks at draw ``index`` (``(K,)``, float64, summing to 1)."""
        rng = np.random.default_rng([self.options.seed, index])
        k = len(self.task_names)
        if self.options.distribution == "dirichlet":
            return torch.from_numpy(rng.dirichlet(np.ones(k)))
        raw = rng.standard_normal(k) if self.options.distribution == "normal" else rng.uniform(size=k)
        return torch.softmax(torch.from_numpy(raw), dim=0)

    def start_forward(self) -> None:
        if self.training:
            self.current = self.draw(int(self.num_draws))
            with torch.no_grad():
                self.num_draws += 1
        else:
            self.current = torch.full(
                (len(self.task_names),), 1.0 / len(self.task_names), dtype=torch.float64
            )

    def task_weight(
        self, name: str, loss: torch.Tensor, context: BackwardContext | None = None
    ) -> torch.Tensor:
        return self.current[self.task_index(name)].to(loss)
