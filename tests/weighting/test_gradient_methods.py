"""Gradient-based weighters against their papers' definitions, computed independently here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import fsolve, minimize
from torch import nn

from mtl_hf.weighting import WEIGHTERS, BackwardContext
from mtl_hf.weighting.mgda import min_norm_weights
from mtl_hf.weighting.nash_mtl import nash_bargaining_weights
from mtl_hf.weighting.pcgrad import project_conflicting
from tests.weighting.helpers import FeatureRecorder, batches, micro_step, plain_context, tiny_model

TWO_TASKS = {"tumour": {"type": "binary_classification"}, "mim": {"type": "mim", "mask_patch_size": 8}}


def make(kind: str, names: list[str], **options):
    cls = WEIGHTERS.get(kind)
    return cls(names, cls.parse_options(options, names))


def vector_backward(weighter, vectors: np.ndarray):
    """Back-propagate losses L_i = <g_i, theta> (so grad L_i = g_i) through the weighter."""
    theta = nn.Parameter(torch.zeros(vectors.shape[1], dtype=torch.float64))
    g = torch.from_numpy(vectors)
    losses = {name: (g[i] * theta).sum() + 1.0 for i, name in enumerate(weighter.task_names)}
    context = BackwardContext(shared_parameters=[theta], parameters=[theta])
    weights = weighter.backward(losses, sum(losses.values()), context)
    return theta.grad.numpy(), np.array([float(weights[n]) for n in weighter.task_names])


# -- PCGrad -----------------------------------------------------------------------------------------
def test_pcgrad_projects_two_conflicting_gradients_by_hand() -> None:
    g1, g2 = np.array([1.0, 0.0]), np.array([-1.0, 1.0])
    # <g1, g2> = -1 < 0: g1' = g1 - (-1 / |g2|^2) g2 = [0.5, 0.5]; g2' = g2 - (-1 / |g1|^2) g1 = [0, 1]
    grad, weights = vector_backward(make("pcgrad", ["a", "b"]), np.stack([g1, g2]))
    np.testing.assert_allclose(grad, [0.5, 1.5], atol=1e-12)
    np.testing.assert_allclose(weights, [2.0, 1.5], atol=1e-12)  # d = 2 g1 + 1.5 g2
    grad, _ = vector_backward(make("pcgrad", ["a", "b"], reduction="mean"), np.stack([g1, g2]))
    np.testing.assert_allclose(grad, [0.25, 0.75], atol=1e-12)


def test_pcgrad_leaves_agreeing_gradients_alone() -> None:
    grad, weights = vector_backward(make("pcgrad", ["a", "b"]), np.array([[1.0, 0.0], [1.0, 1.0]]))
    np.testing.assert_allclose(grad, [2.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(weights, [1.0, 1.0], atol=1e-12)


def test_pcgrad_projection_matches_vector_surgery_for_any_order() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((4, 6))
    orders = [[1, 3, 2], [3, 0, 2], [0, 1, 3], [2, 1, 0]]
    expected = []
    for i in range(4):  # the paper's Algorithm 1 on the vectors themselves
        gi = vectors[i].copy()
        for j in orders[i]:
            dot = gi @ vectors[j]
            if dot < 0:
                gi -= dot / (vectors[j] @ vectors[j]) * vectors[j]
        expected.append(gi)
    a = project_conflicting(torch.from_numpy(vectors @ vectors.T), orders).numpy()
    np.testing.assert_allclose(a @ vectors, np.stack(expected), atol=1e-12)


# -- MGDA -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("g1", "g2"),
    [([1.0, 0.0], [0.0, 2.0]), ([1.0, 0.0], [3.0, 0.0]), ([2.0, 1.0], [-1.0, 0.5]), ([1.0, 1.0], [1.0, 1.0])],
)
def test_mgda_two_gradients_give_the_closed_form_min_norm_point(g1, g2) -> None:
    g1, g2 = np.array(g1), np.array(g2)
    diff = g1 - g2
    alpha = 0.5 if diff @ diff == 0 else float(np.clip((g2 - g1) @ g2 / (diff @ diff), 0.0, 1.0))
    grad, weights = vector_backward(make("mgda", ["a", "b"]), np.stack([g1, g2]))
    np.testing.assert_allclose(grad, alpha * g1 + (1 - alpha) * g2, atol=1e-12)
    np.testing.assert_allclose(weights, [alpha, 1 - alpha], atol=1e-12)


def test_mgda_many_gradients_satisfy_the_min_norm_optimality_conditions() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((4, 3)) + np.array([0.5, 0.0, 0.0])
    w = min_norm_weights(torch.from_numpy(vectors @ vectors.T)).numpy()
    u = w @ vectors
    assert w.min() >= 0 and abs(w.sum() - 1) < 1e-9
    # KKT of min |sum w_i g_i|^2 on the simplex: <g_i, u> >= |u|^2, with equality where w_i > 0
    dots = vectors @ u
    assert np.all(dots >= u @ u - 1e-7)
    np.testing.assert_allclose(dots[w > 1e-6], u @ u, atol=1e-6)


def test_mgda_l2_normalisation_uses_unit_gradients() -> None:
    g = np.array([[2.0, 0.0], [0.0, 4.0]])
    grad, weights = vector_backward(make("mgda", ["a", "b"], normalization="l2"), g)
    # unit vectors e1, e2: min-norm point (e1 + e2) / 2
    np.testing.assert_allclose(grad, [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(weights, [0.25, 0.125], atol=1e-12)


# -- CAGrad -----------------------------------------------------------------------------------------
def cagrad_primal(vectors: np.ndarray, c: float) -> np.ndarray:
    """max_d min_i <g_i, d> s.t. |d - g0| <= c |g0|, solved directly over (d, t)."""
    g0 = vectors.mean(0)
    radius2 = c**2 * (g0 @ g0)
    n = vectors.shape[1]
    cons = [{"type": "ineq", "fun": lambda x, i=i: vectors[i] @ x[:n] - x[n]} for i in range(len(vectors))]
    cons.append({"type": "ineq", "fun": lambda x: radius2 - (x[:n] - g0) @ (x[:n] - g0)})
    res = minimize(
        lambda x: -x[n],
        np.append(g0, 0.0),
        constraints=cons,
        method="SLSQP",
        options={"ftol": 1e-12, "maxiter": 1000},
    )
    assert res.success
    return res.x[:n]


@pytest.mark.parametrize("c", [0.4, 0.8])
def test_cagrad_matches_the_primal_problem(c: float) -> None:
    vectors = np.array([[1.0, 0.2, 0.0, -0.3], [-0.6, 1.0, 0.4, 0.0], [0.1, -0.4, 1.0, 0.5]])
    grad, weights = vector_backward(make("cagrad", ["a", "b", "c"], c=c), vectors)
    expected = cagrad_primal(vectors, c)
    np.testing.assert_allclose(grad * (1 + c**2), expected, atol=2e-5)
    np.testing.assert_allclose(weights @ vectors, grad, rtol=1e-6, atol=1e-7)  # weights are stored in float32
    grad_none, _ = vector_backward(make("cagrad", ["a", "b", "c"], c=c, rescale="none"), vectors)
    np.testing.assert_allclose(grad_none, expected, atol=2e-5)


def test_cagrad_with_zero_radius_is_the_mean_gradient() -> None:
    vectors = np.array([[1.0, 0.0], [-0.5, 1.0]])
    grad, _ = vector_backward(make("cagrad", ["a", "b"], c=0.0), vectors)
    np.testing.assert_allclose(grad, vectors.mean(0), atol=1e-12)


# -- Nash-MTL ---------------------------------------------------------------------------------------
def test_nash_mtl_solves_the_bargaining_equation() -> None:
    vectors = np.array([[1.0, 0.3, 0.0, -0.2], [-0.4, 2.0, 0.1, 0.0], [0.2, -0.5, 0.7, 0.3]])
    gram = vectors @ vectors.T
    alpha = fsolve(lambda a: gram @ a - 1.0 / a, np.ones(3), xtol=1e-13)
    assert np.all(alpha > 0)
    grad, weights = vector_backward(make("nash_mtl", ["a", "b", "c"]), vectors)
    np.testing.assert_allclose(weights, alpha, rtol=1e-6)
    np.testing.assert_allclose(grad, alpha @ vectors, rtol=1e-6, atol=1e-9)
    # the defining property: every task's improvement <g_i, d> equals 1 / alpha_i
    np.testing.assert_allclose(vectors @ grad, 1.0 / weights, rtol=1e-6)


def test_nash_mtl_is_invariant_to_loss_scale() -> None:
    vectors = np.array([[1.0, 0.2], [-0.3, 1.0]])
    grad, weights = vector_backward(make("nash_mtl", ["a", "b"]), vectors)
    scaled = vectors * np.array([[10.0], [1.0]])
    grad_s, weights_s = vector_backward(make("nash_mtl", ["a", "b"]), scaled)
    np.testing.assert_allclose(grad_s, grad, rtol=1e-6)
    np.testing.assert_allclose(weights_s, weights / np.array([10.0, 1.0]), rtol=1e-6)


def nash_reference(gram: np.ndarray, digits: int = 50) -> list[float]:
    """``alpha`` with ``K alpha = 1 / alpha`` to ``digits`` significant digits (mpmath's Newton solver),
    with no ridge: the exact bargaining solution."""
    import mpmath

    with mpmath.workdps(digits):
        k = mpmath.matrix([[mpmath.mpf(float(x)) for x in row] for row in gram])
        n = k.rows

        def equations(*alpha: mpmath.mpf) -> list[mpmath.mpf]:
            return [mpmath.fsum(k[i, j] * alpha[j] for j in range(n)) - 1 / alpha[i] for i in range(n)]

        start = [1 / mpmath.sqrt(k[i, i]) for i in range(n)]
        solution = mpmath.findroot(equations, start, tol=mpmath.mpf(10) ** (-digits + 5))
        assert max(abs(v) for v in equations(*solution)) < mpmath.mpf(10) ** (-digits + 10)
        return [float(v) for v in solution]


@pytest.mark.parametrize(
    "vectors",
    [
        [[1.0, 0.0, 0.0], [0.6e4, 0.8e4, 0.0]],  # gradient norms 1 and 10^4
        [[1.0, 0.0, 0.0, 0.0], [0.6e4, 0.8e4, 0.0, 0.0], [0.3, 0.2, 0.9, 0.1]],
        [[2e-3, 1e-3, 0.0], [-1.0, 3.0, 0.5], [0.0, 4e3, -2e3]],  # norms 2e-3, 3e0, 4e3
    ],
)
def test_nash_mtl_default_ridge_keeps_ill_conditioned_weights_exact(vectors: list[list[float]]) -> None:
    """Task gradient norms 10^4 apart: the default ridge changes no weight beyond its own size (1e-8
    relative); a ridge of 1e-8 * trace(K) / T made the first weight 15 % low here."""
    g = np.array(vectors)
    reference = nash_reference(g @ g.T)
    names = [f"t{i}" for i in range(len(g))]
    grad, weights = vector_backward(make("nash_mtl", names), g)
    np.testing.assert_allclose(weights, reference, rtol=1e-7)
    np.testing.assert_allclose(g @ grad, 1.0 / np.array(reference), rtol=1e-7)
    gram = torch.from_numpy(g @ g.T)
    np.testing.assert_allclose(nash_bargaining_weights(gram).numpy(), reference, rtol=2e-8)  # ~ ridge
    np.testing.assert_allclose(nash_bargaining_weights(gram, ridge=0.0).numpy(), reference, rtol=1e-12)


# -- on the real model: every parameter gets the gradient of sum_i c_i L_i ---------------------------
def twin_grads(weighting: dict, batch: dict, coefficients: dict[str, float]):
    """Independent reference on an identical model: per-task shared gradients and grad of sum c_i L_i."""
    model = tiny_model(weighting, tasks=TWO_TASKS)
    out = model(
        pixel_values=batch["pixel_values"],
        labels={"tumour": batch["labels"]["tumour"]},
        bool_masked_pos=batch["bool_masked_pos"],
    )
    shared = model.shared_parameters()
    per_task = {}
    for name, loss in out.task_losses.items():
        gs = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
        per_task[name] = torch.cat(
            [
                (g if g is not None else torch.zeros_like(p)).reshape(-1)
                for g, p in zip(gs, shared, strict=True)
            ]
        )
    total = sum(coefficients[n] * loss for n, loss in out.task_losses.items())
    params = [p for p in model.parameters() if p.requires_grad]
    full = torch.autograd.grad(total, params, allow_unused=True)
    return per_task, dict(zip([n for n, _ in model.named_parameters()], full, strict=True))


@pytest.mark.parametrize("kind", ["pcgrad", "mgda", "cagrad", "nash_mtl", "gradnorm"])
def test_update_is_the_gradient_of_the_coefficient_weighted_loss(kind: str) -> None:
    weighting = {"type": kind, "gradients": "parameters"}
    model = tiny_model(weighting, tasks=TWO_TASKS)
    recorder = FeatureRecorder(model)
    batch = batches(1, 4)[0]
    batch["labels"] = {"tumour": batch["labels"]["tumour"]}
    weights, _ = micro_step(model, model.weighter, plain_context(model), recorder, batch)
    coefficients = {n: float(w) for n, w in weights.items()}
    per_task, expected = twin_grads(weighting, batch, coefficients)
    for name, p in model.named_parameters():
        ref = expected[name]
        if ref is None:
            assert p.grad is None, name
        else:
            torch.testing.assert_close(p.grad, ref, atol=1e-6, rtol=1e-5, msg=name)
    # ... and the coefficients are the method's, from the per-task shared gradients
    g = torch.stack([per_task["tumour"], per_task["mim"]]).double()
    gram = g @ g.T
    if kind == "pcgrad":
        g1, g2 = g[0], g[1]
        dot = g1 @ g2
        d = g1 + g2 if dot >= 0 else (g1 - dot / (g2 @ g2) * g2) + (g2 - dot / (g1 @ g1) * g1)
        torch.testing.assert_close(
            torch.tensor(list(coefficients.values()), dtype=torch.float64) @ g, d, atol=1e-6, rtol=1e-5
        )
    elif kind == "mgda":
        alpha = float(((g[1] - g[0]) @ g[1] / ((g[0] - g[1]) @ (g[0] - g[1]))).clamp(0, 1))
        assert coefficients["tumour"] == pytest.approx(alpha, abs=1e-6)
    elif kind == "nash_mtl":
        a = np.array([coefficients["tumour"], coefficients["mim"]])
        np.testing.assert_allclose(gram.numpy() @ a, 1.0 / a, rtol=1e-4)
    elif kind == "gradnorm":
        assert coefficients == {"tumour": 1.0, "mim": 1.0}  # first step uses the initial weights


def test_mgda_ub_uses_the_gradients_of_the_shared_features() -> None:
    weighting = {"type": "mgda", "gradients": "features"}
    model = tiny_model(weighting, tasks=TWO_TASKS)
    recorder = FeatureRecorder(model)
    batch = batches(1, 4)[0]
    batch["labels"] = {"tumour": batch["labels"]["tumour"]}
    weights, _ = micro_step(model, model.weighter, plain_context(model), recorder, batch)

    twin = tiny_model(weighting, tasks=TWO_TASKS)
    twin_recorder = FeatureRecorder(twin)
    out = twin(
        pixel_values=batch["pixel_values"], labels=batch["labels"], bool_masked_pos=batch["bool_masked_pos"]
    )
    features = twin_recorder.pop()
    rows = []
    for loss in out.task_losses.values():
        gs = torch.autograd.grad(loss, features, retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat(
                [
                    (g if g is not None else torch.zeros_like(f)).reshape(-1)
                    for g, f in zip(gs, features, strict=True)
                ]
            )
        )
    g = torch.stack(rows).double()
    alpha = float(((g[1] - g[0]) @ g[1] / ((g[0] - g[1]) @ (g[0] - g[1]))).clamp(0, 1))
    assert float(weights["tumour"]) == pytest.approx(alpha, abs=1e-6)
    assert float(weights["mim"]) == pytest.approx(1 - alpha, abs=1e-6)
    total = sum(float(weights[n]) * loss for n, loss in out.task_losses.items())
    total.backward()
    for (name, p), (_, q) in zip(model.named_parameters(), twin.named_parameters(), strict=True):
        if q.grad is None:
            assert p.grad is None, name
        else:
            torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("kind", ["mgda", "pcgrad", "nash_mtl"])
def test_accumulated_micro_batches_combine_once_like_one_big_batch(kind: str) -> None:
    weighting = {"type": kind}
    big = batches(1, 8)[0]
    halves = [
        {k: (v[:4] if k != "labels" else {t: x[:4] for t, x in v.items()}) for k, v in big.items()},
        {k: (v[4:] if k != "labels" else {t: x[4:] for t, x in v.items()}) for k, v in big.items()},
    ]

    model = tiny_model(weighting)
    recorder = FeatureRecorder(model)
    context = plain_context(model, backward=lambda loss, **kw: (loss / 2).backward(**kw))
    micro_step(model, model.weighter, context, recorder, halves[0], sync_gradients=False)
    assert all(p.grad is None for p in model.parameters())  # nothing is applied mid-window
    weights, _ = micro_step(model, model.weighter, context, recorder, halves[1], sync_gradients=True)

    reference = tiny_model(weighting)
    ref_recorder = FeatureRecorder(reference)
    ref_weights, _ = micro_step(reference, reference.weighter, plain_context(reference), ref_recorder, big)
    for n in weights:
        assert float(weights[n]) == pytest.approx(float(ref_weights[n]), rel=1e-5, abs=1e-7)
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters(), strict=True):
        if q.grad is None:
            assert p.grad is None, name
        else:
            torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=1e-5, msg=name)


# -- GradNorm ---------------------------------------------------------------------------------------
class TwoTaskToy(nn.Module):
    """A shared linear layer and two linear heads; task b's loss is 30x larger."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.shared = nn.Linear(8, 16)
        self.head_a = nn.Linear(16, 1)
        self.head_b = nn.Linear(16, 1)

    def losses(self, x, ya, yb):
        z = torch.tanh(self.shared(x))
        la = ((self.head_a(z)[:, 0] - ya) ** 2).mean()
        lb = 30.0 * ((self.head_b(z)[:, 0] - yb) ** 2).mean()
        return z, {"a": la, "b": lb}


def test_gradnorm_first_update_follows_the_paper() -> None:
    toy = TwoTaskToy()
    weighter = make("gradnorm", ["a", "b"], alpha=1.5, lr=0.025)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    ya, yb = torch.randn(64, generator=g), torch.randn(64, generator=g)
    z, losses = toy.losses(x, ya, yb)
    norms = [float(torch.autograd.grad(loss, z, retain_graph=True)[0].norm()) for loss in losses.values()]
    context = BackwardContext(
        shared_parameters=list(toy.shared.parameters()),
        parameters=list(toy.parameters()),
        shared_features=[z],
    )
    weights = weighter.backward(losses, sum(losses.values()), context)
    assert {k: float(v) for k, v in weights.items()} == {"a": 1.0, "b": 1.0}
    # step 0: L(t) = L(0), so r_i = 1 and the target is the mean weighted norm; Adam's first step
    # moves each weight by lr against the sign of (G_i - target), then the weights sum to 2 again.
    target = np.mean(norms)
    moved = np.array([1.0, 1.0]) - 0.025 * np.sign(np.array(norms) - target)
    np.testing.assert_allclose(weighter.task_weights.numpy(), moved * 2 / moved.sum(), rtol=1e-5)
    np.testing.assert_allclose(
        weighter.initial_losses.numpy(), [float(v.detach()) for v in losses.values()], rtol=1e-6
    )


def test_gradnorm_brings_weighted_gradient_norms_to_the_target() -> None:
    toy = TwoTaskToy()
    weighter = make("gradnorm", ["a", "b"], alpha=0.0, lr=0.05)  # alpha 0: equal weighted norms
    optimizer = torch.optim.SGD(toy.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    ya, yb = torch.sin(x[:, 0]), torch.cos(x[:, 1])

    def ratio() -> float:
        z, losses = toy.losses(x, ya, yb)
        n = [float(torch.autograd.grad(loss, z, retain_graph=True)[0].norm()) for loss in losses.values()]
        w = weighter.task_weights
        return float(w[1] * n[1] / (w[0] * n[0]))

    before = ratio()
    for _ in range(150):
        z, losses = toy.losses(x, ya, yb)
        context = BackwardContext(
            shared_parameters=list(toy.shared.parameters()),
            parameters=list(toy.parameters()),
            shared_features=[z],
        )
        weighter.backward(losses, sum(losses.values()), context)
        optimizer.step()
        optimizer.zero_grad()
    after = ratio()
    assert before > 10
    assert abs(np.log(after)) < 0.15 * abs(np.log(before))
    assert float(weighter.task_weights.sum()) == pytest.approx(2.0)


# -- misuse ------------------------------------------------------------------------------------------
def test_feature_mode_without_features_is_an_error() -> None:
    model = tiny_model({"type": "mgda", "gradients": "features"}, tasks=TWO_TASKS)
    out = model(
        **{k: v for k, v in batches(1, 2)[0].items() if k != "labels"},
        labels={"tumour": torch.tensor([0, 1])},
    )
    with pytest.raises(ValueError, match="shared_features"):
        model.weighter.backward(out.task_losses, out.loss, plain_context(model))


def test_parameter_mode_without_parameters_is_an_error() -> None:
    model = tiny_model({"type": "pcgrad"}, tasks=TWO_TASKS)
    out = model(
        **{k: v for k, v in batches(1, 2)[0].items() if k != "labels"},
        labels={"tumour": torch.tensor([0, 1])},
    )
    with pytest.raises(ValueError, match="BackwardContext.parameters"):
        model.weighter.backward(
            out.task_losses, out.loss, BackwardContext(shared_parameters=model.shared_parameters())
        )


def test_one_collective_per_step_with_parameter_gradients_and_one_small_one_per_micro_batch_with_features() -> (
    None
):
    calls: list[int] = []

    def counting_reduce(tensor: torch.Tensor) -> torch.Tensor:
        calls.append(tensor.numel())
        return tensor

    data = batches(4, 2)
    for gradients in ("parameters", "features"):
        calls.clear()
        model = tiny_model({"type": "mgda", "gradients": gradients})
        recorder = FeatureRecorder(model)
        context = plain_context(model, reduce=counting_reduce)
        for i, batch in enumerate(data):  # two optimizer steps of two micro-batches
            micro_step(model, model.weighter, context, recorder, batch, sync_gradients=i % 2 == 1)
        t = len(model.weighter.task_names)
        if gradients == "parameters":
            numel = sum(p.numel() for p in model.parameters())
            assert calls == [t * numel + 2 * t] * 2  # all per-task gradients and losses, once per step
        else:
            assert calls == [t * t + 2 * t] * 4  # the Gram matrix and losses, once per micro-batch
