"""MGDA: multiple-gradient descent (Sener & Koltun, "Multi-Task Learning as Multi-Objective
Optimization", NeurIPS 2018, arXiv:1810.04650), with MGDA-UB as ``gradients: features``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from .base import WEIGHTERS
from .gradient import GradientWeighter, GradientWeighterOptions
from .simplex import minimize_on_simplex, unit_scaled_gram


@dataclass
class MGDAOptions(GradientWeighterOptions):
    """Options of ``mgda``.

    Attributes:
        gradients: ``"parameters"`` (default): MGDA on the gradients of all shared parameters.
            ``"features"``: MGDA-UB, the paper's upper bound (Section 3.3), on the gradients of the shared
            features -- one backward pass through the backbone instead of one per task.
        normalization: Gradient normalisation before the min-norm problem, as in the authors' code:
            ``"none"`` (default, the paper), ``"l2"`` (``g_i / |g_i|``), ``"loss"`` (``g_i / L_i``) or
            ``"loss+"`` (``g_i / (L_i |g_i|)``). The update uses the normalised gradients.
    """

    normalization: Literal["none", "l2", "loss", "loss+"] = "none"


def min_norm_weights(gram: torch.Tensor) -> torch.Tensor:
    """``argmin_{w in simplex} |sum_i w_i g_i|^2`` from the Gram matrix of the ``g_i``.

    Two vectors: the paper's closed form (Algorithm 1),
    ``w_1 = clip(<g_2 - g_1, g_2> / |g_1 - g_2|^2, 0, 1)``. More: the quadratic programme over the
    simplex, solved by SciPy's SLSQP with exact gradients, then refined by solving its optimality
    conditions exactly on the support found.
    """
    t = gram.shape[0]
    if t == 1:
        return torch.ones(1, dtype=torch.float64)
    k = gram.double()
    if t == 2:
        denominator = k[0, 0] + k[1, 1] - 2 * k[0, 1]
        if denominator <= 0:  # identical gradients: every point of the segment is the same
            return torch.full((2,), 0.5, dtype=torch.float64)
        w1 = float(((k[1, 1] - k[0, 1]) / denominator).clamp(0.0, 1.0))
        return torch.tensor([w1, 1.0 - w1], dtype=torch.float64)
    a = unit_scaled_gram(gram)
    w = _polish(a, minimize_on_simplex(lambda w: (float(w @ a @ w), 2.0 * (a @ w)), t))
    return torch.from_numpy(w)


def _polish(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Refine an approximate solution on its support by solving the KKT system exactly there; keep
    the refinement only if it is feasible and optimal (``(a w)_i >= w^T a w`` off the support)."""
    support = w > 1e-9 * w.max()
    s = int(support.sum())
    kkt = np.zeros((s + 1, s + 1))
    kkt[:s, :s] = a[np.ix_(support, support)]
    kkt[:s, s] = -1.0
    kkt[s, :s] = 1.0
    rhs = np.zeros(s + 1)
    rhs[s] = 1.0
    solution = np.linalg.lstsq(kkt, rhs, rcond=None)[0]
    refined = np.zeros_like(w)
    refined[support] = solution[:s]
    value = float(refined @ a @ refined)
    tolerance = 1e-12 * max(float(np.abs(a).max()), 1.0)
    if refined.min() < 0 or not np.all(a @ refined >= value - tolerance) or value > float(w @ a @ w):
        return w
    return refined


@WEIGHTERS.register("mgda")
class MGDA(GradientWeighter):
    """MGDA (Sener & Koltun 2018): the update is the minimum-norm point of the convex hull of the task
    gradients, a common descent direction of all tasks (or zero at a Pareto-stationary point).
    Reported weights: the min-norm weights (summing to 1), divided by the normalisation factors.

    A task absent from every process's batches in an accumulation window gets coefficient 0; the
    min-norm problem is solved over the tasks present.
    """

    Options = MGDAOptions
    options: MGDAOptions

    def combine(self, gram: torch.Tensor, losses: torch.Tensor, tasks: Sequence[int]) -> torch.Tensor:
        norms = gram.diagonal().clamp_min(0.0).sqrt()
        mode = self.options.normalization
        if mode == "l2":
            factors = norms
        elif mode == "loss":
            factors = losses
        elif mode == "loss+":
            factors = losses * norms
        else:
            factors = torch.ones_like(losses)
        factors = torch.where(factors > 0, factors, torch.ones_like(factors))
        normalised = gram / (factors[:, None] * factors[None, :])
        return min_norm_weights(normalised) / factors
