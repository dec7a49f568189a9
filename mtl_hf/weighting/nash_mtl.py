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
        ridge: Relative ridge: ``ridge * K_ii`` is added to each diagonal entry of the Gram matrix
            ``K`` so that a solution exists when the gradients are linearly dependent (default 1e-8);
            each weight then moves by a relative ``O(ridge)`` however the tasks' gradient norms differ.
    """

    ridge: float = 1e-8


def nash_bargaining_weights(gram: torch.Tensor, ridge: float = 1e-8) -> torch.Tensor:
    """The Nash bargaining solution: ``alpha > 0`` with ``K alpha = 1 / alpha`` (elementwise).

    ``alpha`` is the unique minimiser of the convex ``f(alpha) = alpha^T K alpha / 2 - sum_i log alpha_i``
    (its stationarity condition is the equation above). The problem is first scaled per task: with
    ``d_i = sqrt(K_ii)`` (the norm of task ``i``'s gradient) and ``C = K / (d d^T)`` (unit diagonal),
    ``alpha_i = beta_i / d_i`` where ``C beta = 1 / beta``. ``beta`` is found exactly by a trust-region
    Newton method (SciPy's ``trust-exact``) in ``u = log beta``. Solving on ``C`` makes the answer
    independent of how differently the tasks' gradients are scaled (norms 10^4 apart are common), and
    the ridge ``ridge * I`` added to ``C`` (so that a solution exists when gradients are linearly
    dependent) is ``ridge * K_ii`` on each task's own diagonal entry: it changes every weight by a
    relative ``O(ridge)``, whereas a ridge shared by all tasks (``ridge * trace(K) / T``) can rival the
    smallest diagonal entry. Tasks with a zero gradient get 0, however small the others' are.
    """
    from scipy.optimize import minimize  # imported on first use: it is slow to import

    k = gram.double().numpy()
    t = k.shape[0]
    diag = np.diag(k)
    # Only a gradient that is exactly zero (or underflows) leaves the game: the solution is invariant to
    # each task's scale, so a gradient 10^-6 times the others' still gets its full say.
    active = np.isfinite(diag) & (diag > np.finfo(np.float64).tiny)
    alpha = np.zeros(t)
    if not active.any():
        return torch.from_numpy(alpha)
    norms = np.sqrt(diag[active])
    c = k[np.ix_(active, active)] / np.outer(norms, norms) + ridge * np.eye(len(norms))

    def fun(u: np.ndarray) -> tuple[float, np.ndarray]:
        b = np.exp(u)
        cb = c @ b
        return 0.5 * float(b @ cb) - float(u.sum()), b * cb - 1.0

    def hess(u: np.ndarray) -> np.ndarray:
        b = np.exp(u)
        return np.diag(b * (c @ b)) + b[:, None] * c * b[None, :]

    result = minimize(
        fun, np.zeros(len(norms)), jac=True, hess=hess, method="trust-exact", options={"gtol": 1e-12}
    )
    beta = np.exp(result.x)
    for _ in range(2):  # Newton on C beta = 1 / beta from that solution: the last digits
        step = beta - np.linalg.solve(c + np.diag(1.0 / beta**2), c @ beta - 1.0 / beta)
        if not (np.isfinite(step).all() and (step > 0).all()):
            break
        beta = step
    alpha[active] = beta / norms
    return torch.from_numpy(alpha)


@WEIGHTERS.register("nash_mtl")
class NashMTL(GradientWeighter):
    """Nash-MTL (Navon et al. 2022): the update ``d = sum_i alpha_i g_i`` is the Nash bargaining solution
    among tasks, ``<g_i, d> = 1 / alpha_i`` for every task, which is invariant to the scale of each
    task's loss. Solved exactly with SciPy (no convex-solver dependency). Reported weights: ``alpha``.

    A task absent from every process's batches in an accumulation window gets coefficient 0; the
    bargaining solution is computed over the tasks present.
    """

    Options = NashMTLOptions
    options: NashMTLOptions

    @classmethod
    def check_options(cls, options: Any, task_names: Sequence[str]) -> None:
        if not 0.0 <= options.ridge < 1.0:
            raise ValueError(f"weighting.ridge: must be in [0, 1), got {options.ridge}")

    def combine(self, gram: torch.Tensor, losses: torch.Tensor, tasks: Sequence[int]) -> torch.Tensor:
        return nash_bargaining_weights(gram, self.options.ridge)
