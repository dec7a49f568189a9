"""Nash-MTL: multi-task learning as a bargaining game (Navon, Shamsian, Achituve, Maron, Kawaguchi,
Chechik & Fetaya, "Multi-Task Learning as a Bargaining Game", ICML 2022, arXiv:2202.01017)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .base import WEIGHTERS
from .gradient import GradientWeighter, GradientWeighterOptions


@dataclass
class NashMTLOptions(GradientWeighterOptions):
    """Options of ``nash_mtl``.

    Attributes:
        gradients: ``"parameters"`` (default, the paper) or ``"features"`` (see
            :class:`~mtl_hf.weighting.gradient.GradientWeighterOptions`).
        ridge: Relative ridge ``eps * trace(K) / T`` added to the Gram matrix ``K`` so that a solution
            exists when the gradients are linearly dependent (default 1e-8).
    """

    ridge: float = 1e-8


def nash_bargaining_weights(gram: torch.Tensor, ridge: float = 1e-8) -> torch.Tensor:
    """The Nash bargaining solution: ``alpha > 0`` with ``K alpha = 1 / alpha`` (elementwise).

    ``alpha`` is the unique minimiser of the convex ``f(alpha) = alpha^T K alpha / 2 - sum_i log alpha_i``
    (its stationarity condition is the equation above). It is found exactly by a trust-region Newton
    method (SciPy's ``trust-exact``) in ``u = log alpha``, on ``K`` scaled to unit Frobenius norm;
    ``alpha(s K) = alpha(K) / sqrt(s)`` undoes the scaling. Tasks with a zero gradient get 0.
    """
    from scipy.optimize import minimize  # imported on first use: it is slow to import

    k = gram.double().numpy()
    t = k.shape[0]
    diag = np.diag(k)
    active = diag > 1e-12 * max(float(diag.max()), 0.0) if diag.max() > 0 else np.zeros(t, dtype=bool)
    alpha = np.zeros(t)
    if not active.any():
        return torch.from_numpy(alpha)
    ka = k[np.ix_(active, active)]
    ka = ka + ridge * np.trace(ka) / len(ka) * np.eye(len(ka))
    norm = float(np.linalg.norm(ka))
    kn = ka / norm

    def fun(u: np.ndarray) -> tuple[float, np.ndarray]:
        a = np.exp(u)
        ka_ = kn @ a
        return 0.5 * float(a @ ka_) - float(u.sum()), a * ka_ - 1.0

    def hess(u: np.ndarray) -> np.ndarray:
        a = np.exp(u)
        return np.diag(a * (kn @ a)) + a[:, None] * kn * a[None, :]

    result = minimize(
        fun, np.zeros(len(ka)), jac=True, hess=hess, method="trust-exact", options={"gtol": 1e-12}
    )
    alpha[active] = np.exp(result.x) / np.sqrt(norm)
    return torch.from_numpy(alpha)


@WEIGHTERS.register("nash_mtl")
class NashMTL(GradientWeighter):
    """Nash-MTL (Navon et al. 2022): the update ``d = sum_i alpha_i g_i`` is the Nash bargaining solution
    among tasks, ``<g_i, d> = 1 / alpha_i`` for every task, which is invariant to the scale of each
    task's loss. Solved exactly with SciPy (no convex-solver dependency). Reported weights: ``alpha``.
    """

    Options = NashMTLOptions
    options: NashMTLOptions

    @classmethod
    def check_options(cls, options: Any, task_names: Sequence[str]) -> None:
        if not 0.0 <= options.ridge < 1.0:
            raise ValueError(f"weighting.ridge: must be in [0, 1), got {options.ridge}")

    def combine(self, gram: torch.Tensor, losses: torch.Tensor, tasks: Sequence[int]) -> torch.Tensor:
        return nash_bargaining_weights(gram, self.options.ridge)
