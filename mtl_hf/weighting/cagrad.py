"""CAGrad: conflict-averse gradient descent (Liu, Liu, Jin, Stone & Liu, "Conflict-Averse Gradient
Descent for Multi-task Learning", NeurIPS 2021, arXiv:2110.14048)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from .base import WEIGHTERS
from .gradient import GradientWeighter, GradientWeighterOptions
from .simplex import minimize_on_simplex, unit_scaled_gram


@dataclass
class CAGradOptions(GradientWeighterOptions):
    """Options of ``cagrad``.

    Attributes:
        gradients: ``"parameters"`` (default, the paper) or ``"features"`` (see
            :class:`~mtl_hf.weighting.gradient.GradientWeighterOptions`).
        c: Radius of the ball around the average gradient ``g0`` in which the update maximises the
            worst task's improvement, relative to ``|g0|`` (default 0.5, the paper's; 0 gives ``g0``).
        rescale: Division of the update, as in the authors' code: ``"1+c^2"`` (default), ``"1+c"`` or
            ``"none"``.
    """

    c: float = 0.5
    rescale: Literal["1+c^2", "1+c", "none"] = "1+c^2"


def cagrad_coefficients(gram: torch.Tensor, c: float) -> torch.Tensor:
    """Coefficients of CAGrad's direction ``d = g0 + c |g0| / |g_w| g_w`` (before rescaling).

    ``g0`` is the mean gradient and ``g_w = sum_i w_i g_i`` for the ``w`` in the simplex that minimises
    the dual objective ``<g_w, g0> + c |g0| |g_w|`` (SciPy's SLSQP, exact gradients). ``d`` maximises
    ``min_i <g_i, d>`` over ``|d - g0| <= c |g0|``.
    """
    t = gram.shape[0]
    k = unit_scaled_gram(gram)  # the optimal w does not depend on the scale
    b = k.mean(axis=1)
    g0_norm = float(np.sqrt(max(k.mean(), 0.0)))
    radius = c * g0_norm

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        norm = float(np.sqrt(max(w @ k @ w, 0.0) + 1e-20))
        return float(w @ b) + radius * norm, b + radius * (k @ w) / norm

    w = minimize_on_simplex(objective, t)
    gw_norm = float(np.sqrt(max(w @ k @ w, 0.0)))
    lam = radius / gw_norm if gw_norm > 0 else 0.0
    return torch.from_numpy(np.full(t, 1.0 / t) + lam * w)


@WEIGHTERS.register("cagrad")
class CAGrad(GradientWeighter):
    """CAGrad (Liu et al. 2021): the update maximises the smallest per-task improvement within a ball of
    radius ``c |g0|`` around the average gradient ``g0``, so it converges to a minimum of the average
    loss while reducing conflicts. Reported weights: ``(1/T + lambda w_i) / rescale``.

    A task absent from every process's batches in an accumulation window gets coefficient 0; the
    conflict-averse direction is computed over the tasks present.
    """

    Options = CAGradOptions
    options: CAGradOptions

    @classmethod
    def check_options(cls, options: Any, task_names: Sequence[str]) -> None:
        if not 0.0 <= options.c < float("inf"):
            raise ValueError(f"weighting.c: must be a finite number >= 0, got {options.c}")

    def combine(self, gram: torch.Tensor, losses: torch.Tensor, tasks: Sequence[int]) -> torch.Tensor:
        c = self.options.c
        coefficients = cagrad_coefficients(gram, c)
        divisor = {"1+c^2": 1.0 + c**2, "1+c": 1.0 + c, "none": 1.0}[self.options.rescale]
        return coefficients / divisor
