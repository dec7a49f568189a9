"""Minimisation over the probability simplex, shared by the weighters that solve a small programme
over task weights (MGDA's min-norm point, CAGrad's dual)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def unit_scaled_gram(gram: torch.Tensor) -> np.ndarray:
    """The Gram matrix as float64 NumPy, divided by its largest absolute entry: the minimisers below
    do not depend on the scale, and the solver's tolerances then mean the same for any gradients."""
    k = gram.double().numpy()
    return k / max(float(np.abs(k).max()), 1e-300)


def minimize_on_simplex(objective: Callable[[np.ndarray], tuple[float, np.ndarray]], size: int) -> np.ndarray:
    """``argmin_w objective(w)`` over ``w >= 0, sum(w) = 1`` (SciPy's SLSQP with the exact gradient that
    ``objective`` returns next to its value), from the centre; clipped and renormalised onto the simplex."""
    from scipy.optimize import minimize  # imported on first use: it is slow to import

    result = minimize(
        objective,
        np.full(size, 1.0 / size),
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * size,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
        options={"ftol": 1e-15, "maxiter": 500},
    )
    w = np.clip(result.x, 0.0, None)
    return w / w.sum()
