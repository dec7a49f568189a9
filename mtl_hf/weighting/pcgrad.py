"""PCGrad: projecting conflicting gradients (Yu et al., "Gradient Surgery for Multi-Task Learning",
NeurIPS 2020, arXiv:2001.06782)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from .base import WEIGHTERS
from .gradient import GradientWeighter, GradientWeighterOptions


@dataclass
class PCGradOptions(GradientWeighterOptions):
    """Options of ``pcgrad``.

    Attributes:
        gradients: ``"parameters"`` (default, the paper) or ``"features"`` (see
            :class:`~mtl_hf.weighting.gradient.GradientWeighterOptions`).
        reduction: How the projected gradients are merged: ``"sum"`` (default, the paper's Algorithm 1)
            or ``"mean"``.
        seed: Seed of the random order in which each task's gradient is projected onto the others; the
            order of a step is drawn from ``(seed, step)``, so every process and a resumed run draw alike.
    """

    reduction: Literal["sum", "mean"] = "sum"
    seed: int = 0


def project_conflicting(gram: torch.Tensor, orders: Sequence[Sequence[int]]) -> torch.Tensor:
    """PCGrad's projections expressed on the task gradients: ``A`` with ``g_i^PC = sum_k A_ik g_k``.

    For each task ``i``, in the order ``orders[i]`` of the other tasks ``j``: if
    ``<g_i^PC, g_j> < 0``, then ``g_i^PC <- g_i^PC - <g_i^PC, g_j> / |g_j|^2 g_j``. Every inner product
    is read off the Gram matrix ``gram`` (``<g_i^PC, g_j> = (A K)_ij``), so the cost does not depend on
    the number of parameters.
    """
    num_tasks = gram.shape[0]
    projection = torch.eye(num_tasks, dtype=gram.dtype)
    for i in range(num_tasks):
        for j in orders[i]:
            dot = projection[i] @ gram[:, j]
            if dot < 0 and gram[j, j] > 0:
                projection[i, j] -= dot / gram[j, j]
    return projection


@WEIGHTERS.register("pcgrad")
class PCGrad(GradientWeighter):
    """PCGrad (Yu et al. 2020): each task's gradient, where it conflicts with another task's
    (negative inner product), is projected onto the normal plane of that gradient; the update is the
    sum of the projected gradients. Reported weights: ``c_k = sum_i A_ik`` with ``d = sum_k c_k g_k``.

    A task absent from every process's batches in an accumulation window has no gradient and coefficient
    0; the projection runs over the tasks present.
    """

    Options = PCGradOptions
    options: PCGradOptions

    @classmethod
    def check_options(cls, options: Any, task_names: Sequence[str]) -> None:
        if options.seed < 0:
            raise ValueError(f"weighting.seed: must be >= 0, got {options.seed}")

    def combine(self, gram: torch.Tensor, losses: torch.Tensor, tasks: Sequence[int]) -> torch.Tensor:
        rng = np.random.default_rng([self.options.seed, int(self.num_combinations)])
        t = len(tasks)
        orders = [[int(j) for j in rng.permutation([k for k in range(t) if k != i])] for i in range(t)]
        coefficients = project_conflicting(gram, orders).sum(dim=0)
        return coefficients / t if self.options.reduction == "mean" else coefficients
