"""Loss-based weighters against their papers' update rules, step by step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mtl_hf.weighting import WEIGHTERS, BackwardContext


def make(kind: str, names: list[str], **options):
    cls = WEIGHTERS.get(kind)
    return cls(names, cls.parse_options(options, names))


def as_floats(weights: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v) for k, v in weights.items()}


# -- fixed ------------------------------------------------------------------------------------------
def test_fixed_weights_and_total() -> None:
    weighter = make("fixed", ["a", "b"], weights={"b": 0.25})
    losses = {"a": torch.tensor(2.0), "b": torch.tensor(4.0)}
    out = weighter(losses)
    assert float(out.loss) == 3.0
    assert as_floats(out.weights) == {"a": 1.0, "b": 0.25}


# -- uncertainty --------------------------------------------------------------------------------------
def test_uncertainty_loss_follows_both_forms() -> None:
    weighter = make("uncertainty", ["reg", "cls"], forms={"cls": "classification"})
    assert weighter.state_names == ["cls", "reg"]  # per-task state is stored in sorted task order
    with torch.no_grad():
        weighter.log_variances.copy_(torch.tensor([-1.0, 0.5]))
    losses = {"reg": torch.tensor(2.0), "cls": torch.tensor(0.7)}
    out = weighter(losses)
    expected = 0.5 * math.exp(-0.5) * 2.0 + 0.25 + math.exp(1.0) * 0.7 - 0.5
    assert float(out.loss.detach()) == pytest.approx(expected)
    assert as_floats(out.weights) == pytest.approx({"reg": 0.5 * math.exp(-0.5), "cls": math.exp(1.0)})


def test_uncertainty_optimum_of_each_form_for_a_constant_loss() -> None:
    # d/ds [f e^{-s} L + s/2] = 0  =>  e^s = 2 f L: sigma^2 = L (regression, f=1/2), 2L (classification)
    weighter = make("uncertainty", ["reg", "cls"], forms={"cls": "classification"})
    optimizer = torch.optim.Adam(weighter.parameters(), lr=0.05)
    losses = {"reg": torch.tensor(3.0), "cls": torch.tensor(0.2)}
    for _ in range(2000):
        weighter(losses).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    np.testing.assert_allclose(
        torch.exp(weighter.log_variances.detach()).numpy(), [0.4, 3.0], rtol=1e-3
    )  # cls, reg


def test_uncertainty_learns_the_noise_ratio_of_two_regression_tasks() -> None:
    """y_a = f(x) + N(0, 0.5^2), y_b = g(x) + N(0, 2^2): at convergence sigma_i^2 = MSE_i = noise
    variance, so the weight ratio w_a / w_b = sigma_b^2 / sigma_a^2 = 16."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 4, generator=g)
    true_a, true_b = torch.randn(4, generator=g), torch.randn(4, generator=g)
    ya = x @ true_a + 0.5 * torch.randn(4000, generator=g)
    yb = x @ true_b + 2.0 * torch.randn(4000, generator=g)
    torch.manual_seed(0)
    shared = nn.Linear(4, 8)
    head_a, head_b = nn.Linear(8, 1), nn.Linear(8, 1)
    weighter = make("uncertainty", ["a", "b"])
    params = [*shared.parameters(), *head_a.parameters(), *head_b.parameters(), *weighter.parameters()]
    optimizer = torch.optim.Adam(params, lr=0.02)
    for _ in range(1500):
        z = shared(x)
        losses = {"a": ((head_a(z)[:, 0] - ya) ** 2).mean(), "b": ((head_b(z)[:, 0] - yb) ** 2).mean()}
        out = weighter(losses)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    ratio = float(out.weights["a"] / out.weights["b"])
    assert ratio == pytest.approx(16.0, rel=0.1)
    mse = torch.stack([losses["a"], losses["b"]]).detach()
    np.testing.assert_allclose(torch.exp(weighter.log_variances.detach()).numpy(), mse.numpy(), rtol=0.02)


# -- DWA ----------------------------------------------------------------------------------------------
def test_dwa_follows_its_update_rule_epoch_by_epoch() -> None:
    weighter = make("dwa", ["a", "b", "c"], temperature=2.0)
    losses = {n: torch.tensor(1.0) for n in "abc"}
    assert as_floats(weighter(losses).weights) == {"a": 1.0, "b": 1.0, "c": 1.0}
    weighter.on_epoch_end(0, {"a": 1.0, "b": 2.0, "c": 4.0})
    assert as_floats(weighter(losses).weights) == {"a": 1.0, "b": 1.0, "c": 1.0}  # t = 2: still 1
    weighter.on_epoch_end(1, {"a": 0.5, "b": 1.8, "c": 4.0})
    r = np.array([0.5 / 1.0, 1.8 / 2.0, 4.0 / 4.0])
    expected = 3 * np.exp(r / 2) / np.exp(r / 2).sum()
    got = weighter(losses).weights
    np.testing.assert_allclose([float(got[n]) for n in "abc"], expected, rtol=1e-6)
    weighter.on_epoch_end(2, {"a": 0.45, "b": 0.9, "c": 2.0})
    r = np.array([0.45 / 0.5, 0.9 / 1.8, 2.0 / 4.0])
    expected = 3 * np.exp(r / 2) / np.exp(r / 2).sum()
    got = weighter(losses).weights
    np.testing.assert_allclose([float(got[n]) for n in "abc"], expected, rtol=1e-6)
    assert float(weighter(losses).loss) == pytest.approx(expected.sum())


# -- RLW ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("distribution", ["normal", "uniform", "dirichlet"])
def test_rlw_draws_reproducible_weights_on_the_simplex(distribution: str) -> None:
    a = make("rlw", ["x", "y", "z"], distribution=distribution, seed=7)
    b = make("rlw", ["x", "y", "z"], distribution=distribution, seed=7)
    losses = {n: torch.tensor(1.0) for n in "xyz"}
    draws = []
    for _ in range(400):
        wa, wb = as_floats(a(losses).weights), as_floats(b(losses).weights)
        assert wa == wb
        assert sum(wa.values()) == pytest.approx(1.0)
        draws.append(list(wa.values()))
    draws_arr = np.array(draws)
    assert len({tuple(d) for d in draws}) == 400
    np.testing.assert_allclose(draws_arr.mean(0), [1 / 3] * 3, atol=0.03)
    assert int(a.num_draws) == 400
    a.eval()
    assert as_floats(a(losses).weights) == pytest.approx({n: 1 / 3 for n in "xyz"})
    assert int(a.num_draws) == 400
    rng = np.random.default_rng([7, 0])
    if distribution == "normal":
        first = np.exp(rng.standard_normal(3))
        np.testing.assert_allclose(draws_arr[0], first / first.sum(), rtol=1e-6)


# -- FAMO ---------------------------------------------------------------------------------------------
class ReferenceFAMO:
    """The authors' update, written out with torch.optim.Adam on a leaf tensor."""

    def __init__(self, n: int, lr: float, gamma: float) -> None:
        self.w = torch.zeros(n, dtype=torch.float64, requires_grad=True)
        self.opt = torch.optim.Adam([self.w], lr=lr, weight_decay=gamma)

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        z = torch.softmax(self.w.detach(), -1)
        d = losses + 1e-8
        c = (z / d).sum()
        return z / (c * d)  # the gradient of sum z log(d) / c with respect to the losses

    def update(self, previous: torch.Tensor, current: torch.Tensor) -> None:
        delta = (previous + 1e-8).log() - (current + 1e-8).log()
        d = torch.autograd.grad(torch.softmax(self.w, -1), self.w, grad_outputs=delta)[0]
        self.opt.zero_grad()
        self.w.grad = d
        self.opt.step()


def test_famo_follows_its_update_rule_step_by_step() -> None:
    weighter = make("famo", ["a", "b", "c"], lr=0.1, weight_decay=1e-3)
    reference = ReferenceFAMO(3, lr=0.1, gamma=1e-3)
    rng = np.random.default_rng(0)
    trajectory = np.exp(-np.outer(np.arange(8), [0.3, 0.05, 0.15])) * np.array([1.0, 2.0, 0.5])
    trajectory *= 1 + 0.05 * rng.standard_normal(trajectory.shape)
    previous = None
    for step_losses in trajectory:
        losses = {n: torch.tensor(float(v)) for n, v in zip("abc", step_losses, strict=True)}
        out = weighter(losses)
        expected = reference.weights(torch.from_numpy(step_losses))
        np.testing.assert_allclose([float(out.weights[n]) for n in "abc"], expected.numpy(), rtol=1e-5)
        assert sum(as_floats(out.weights).values()) == pytest.approx(1.0)
        weighter.on_step_end({n: float(v) for n, v in zip("abc", step_losses, strict=True)})
        if previous is not None:
            reference.update(torch.from_numpy(previous), torch.from_numpy(step_losses))
        previous = step_losses
        np.testing.assert_allclose(
            weighter.logits.numpy(), reference.w.detach().numpy(), rtol=1e-5, atol=1e-7
        )
    # the task whose loss fell fastest (a) ends with the smallest logit
    assert int(np.argmin(weighter.logits.numpy())) == 0


def test_famo_same_batch_learns_from_each_steps_losses_before_and_after_its_update() -> None:
    """``update: same_batch``: the logits move by log D(before) - log D(after) of the same step only,
    never across steps (the next step's losses are on another batch)."""
    weighter = make("famo", ["a", "b"], lr=0.1, weight_decay=1e-3, update="same_batch")
    assert weighter.needs_losses_after_step and not make("famo", ["a", "b"]).needs_losses_after_step
    reference = ReferenceFAMO(2, lr=0.1, gamma=1e-3)
    rng = np.random.default_rng(1)
    for _ in range(6):
        before = rng.uniform(0.5, 2.0, 2)
        after = before * rng.uniform(0.7, 1.0, 2)
        weighter.on_step_end({"a": float(before[0]), "b": float(before[1])})
        weighter.on_losses_after_step({"a": float(after[0]), "b": float(after[1])})
        reference.update(torch.from_numpy(before), torch.from_numpy(after))
        np.testing.assert_allclose(
            weighter.logits.numpy(), reference.w.detach().numpy(), rtol=1e-5, atol=1e-7
        )


def test_famo_gradient_is_the_weighted_sum_of_task_gradients() -> None:
    weighter = make("famo", ["a", "b"])
    with torch.no_grad():
        weighter.logits.copy_(torch.tensor([0.3, -0.2]))
    theta = nn.Parameter(torch.tensor([1.0, 2.0]))
    losses = {"a": theta[0] ** 2, "b": 3 * theta[1] ** 2}
    out = weighter(losses)
    weights = weighter.backward(losses, out.loss, BackwardContext())
    z = torch.softmax(torch.tensor([0.3, -0.2]), 0)
    d = torch.tensor([1.0, 12.0])  # the loss values
    log_objective_grad = torch.tensor([z[0] / d[0] * 2.0, z[1] / d[1] * 12.0]) / (z / d).sum()
    torch.testing.assert_close(theta.grad, log_objective_grad)
    assert as_floats(weights) == pytest.approx(as_floats(out.weights))


def test_famo_ignores_non_finite_losses() -> None:
    weighter = make("famo", ["a", "b"])
    weighter.on_step_end({"a": 1.0, "b": 1.0})
    weighter.on_step_end({"a": float("nan"), "b": 0.5})
    assert torch.isfinite(weighter.logits).all()
    assert float(weighter.previous_losses[0]) == 1.0
