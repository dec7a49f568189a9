"""The weighter examples of ``docs/plugins.md``, taken from the page and run: the loss-based one through
the real training loop (its weights follow the running means of the logged losses, computed here by
hand), the gradient-based one through the loop's backward protocol (its update is the hand-computed
combination of per-task gradients)."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
import torch

from mtl_hf import WEIGHTERS, MTLConfig, MTLModel
from mtl_hf.options import OptionsError, from_dict
from mtl_hf.train import train
from mtl_hf.training.config import RunConfig
from mtl_hf.training.metrics_log import read_metrics
from mtl_hf.weighting import BackwardContext
from tests.training.synthetic import TINY_BACKBONE, base_config, make_data

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def guide_examples() -> types.ModuleType:
    """The ``python`` blocks of the guide's weighter examples, run in order as one module."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text[
        text.index("### A loss-based weighter to copy") : text.index("## Declaring the entry points")
    ]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 2, "the guide's weighter section should hold the two examples"
    module = types.ModuleType("plugin_guide_weighters")
    sys.modules[module.__name__] = module
    for block in blocks:
        exec(compile(block, str(GUIDE), "exec"), module.__dict__)
    return module


@pytest.fixture(scope="module")
def examples() -> types.ModuleType:
    module = sys.modules.get("plugin_guide_weighters") or guide_examples()
    for name, cls in (
        ("guide_inverse_loss", module.InverseLossWeights),
        ("guide_equal_norms", module.EqualGradientNorms),
    ):
        if name not in WEIGHTERS:
            WEIGHTERS.register(name)(cls)
    return module


def test_the_loss_based_example_trains_and_follows_the_running_mean_losses(
    examples: types.ModuleType, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    raw = base_config(str(tmp_path / "run"))
    raw["model"]["weighting"] = {"type": "guide_inverse_loss", "momentum": 0.5}
    result = train(from_dict(RunConfig, raw), make_data())
    assert isinstance(result.model.weighter, examples.InverseLossWeights)

    rows = [r for r in read_metrics(result.output_dir / "metrics.jsonl") if r["split"] == "train"]
    running = {"mim": 1.0, "tumour": 1.0}
    checked = 0
    for row in rows:  # one row per step (log_every_steps: 1)
        losses = {k.split("/", 1)[1]: v for k, v in row.items() if k.startswith("loss/")}
        for task in losses:  # the weight of the step comes from the running means before it
            assert row[f"weight/{task}"] == pytest.approx(1.0 / running[task], rel=1e-5)
            checked += 1
        for task, value in losses.items():  # on_step_end then moves them
            running[task] = 0.5 * running[task] + 0.5 * value
    assert checked > len(rows)  # steps with both tasks were checked
    assert len({round(r["weight/tumour"], 6) for r in rows if "weight/tumour" in r}) > 2  # weights moved
    saved = result.model.weighter.running_losses  # the buffer is the model's state (sorted task order)
    assert saved.shape == (2,) and torch.isfinite(saved).all()


def test_the_loss_based_example_checks_its_options(examples: types.ModuleType) -> None:
    with pytest.raises(OptionsError, match=r"momentum must be in \[0, 1\), got 1.5"):
        MTLConfig(backbone_config=TINY_BACKBONE, weighting={"type": "guide_inverse_loss", "momentum": 1.5})


def test_the_gradient_based_example_scales_every_task_gradient_to_the_mean_norm(
    examples: types.ModuleType,
) -> None:
    torch.manual_seed(0)
    model = MTLModel(
        MTLConfig(
            backbone_config=TINY_BACKBONE,
            tasks={
                "tumour": {"type": "binary_classification"},
                "grade": {"type": "multiclass_classification", "num_classes": 3},
            },
            weighting={"type": "guide_equal_norms"},
        )
    ).train()
    x = torch.randn(6, 1, 32, 32)
    labels = {"tumour": torch.tensor([0.0, 1, 0, 1, 1, 0]), "grade": torch.tensor([0, 1, 2, 2, 1, 0])}
    shared = model.shared_parameters()
    heads = {name: list(model.head(name).parameters()) for name in labels}

    out = model(x, labels=labels)
    grads = {}
    for name, loss in out.task_losses.items():
        found = torch.autograd.grad(loss, shared + heads[name], retain_graph=True, allow_unused=True)
        grads[name] = [
            torch.zeros_like(p) if g is None else g for p, g in zip(shared + heads[name], found, strict=True)
        ]
    flat = {name: torch.cat([g.flatten() for g in grads[name][: len(shared)]]).double() for name in grads}
    norms = {name: flat[name].norm() for name in flat}
    mean_norm = sum(norms.values()) / len(norms)
    coefficients = {name: mean_norm / norms[name] for name in norms}

    context = BackwardContext(
        shared_parameters=shared, parameters=[p for p in model.parameters() if p.requires_grad]
    )
    weights = model.weighter.backward(out.task_losses, out.loss, context)

    assert {k: float(v) for k, v in weights.items()} == pytest.approx(
        {k: float(v) for k, v in coefficients.items()}, rel=1e-5
    )
    # a parameter no task reached (the mask token, unused by the clean view) keeps grad None
    update = torch.cat(
        [(torch.zeros_like(p) if p.grad is None else p.grad).flatten() for p in shared]
    ).double()
    expected = sum(coefficients[name] * flat[name] for name in flat)
    torch.testing.assert_close(update, expected, rtol=1e-4, atol=1e-7)
    combined = {name: coefficients[name] * flat[name] for name in flat}  # every task now has the mean norm
    assert all(float(v.norm()) == pytest.approx(float(mean_norm), rel=1e-9) for v in combined.values())
    for name, params in heads.items():  # a task's own head gets its gradient times its coefficient
        for p, g in zip(params, grads[name][len(shared) :], strict=True):
            torch.testing.assert_close(p.grad.double(), coefficients[name] * g.double(), rtol=1e-4, atol=1e-7)
