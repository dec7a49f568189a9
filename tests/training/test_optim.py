"""Optimizer groups, layer-wise decay and the phase schedule, against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from mtl_hf import MTLModel
from mtl_hf.training.config import OptimizerSection, ScheduleSection
from mtl_hf.training.optim import backbone_depth, build_optimizer, parameter_groups, phase_lr_factor
from tests.conftest import tiny_config


def test_groups_skip_decay_on_biases_norms_and_tokens_and_decay_lr_by_depth() -> None:
    model = MTLModel(tiny_config())
    groups = parameter_groups(
        model, OptimizerSection(lr=1.0, weight_decay=0.1, layer_decay=0.5), num_layers=2
    )
    by_name = {name: g for g in groups for name in g["names"]}
    assert by_name["backbone.layers.0.attention.q_proj.weight"]["weight_decay"] == 0.1
    assert by_name["backbone.layers.0.attention.q_proj.bias"]["weight_decay"] == 0.0
    assert by_name["backbone.layers.1.layernorm_before.weight"]["weight_decay"] == 0.0
    assert by_name["backbone.embeddings.cls_token"]["weight_decay"] == 0.0
    assert by_name["backbone.embeddings.position_embeddings"]["weight_decay"] == 0.0
    # depth: embeddings 0, block i -> i + 1, final norm and heads -> L + 1 = 3
    assert by_name["backbone.embeddings.patch_embeddings.projection.weight"]["lr"] == 0.5**3
    assert by_name["backbone.layers.0.mlp.fc1.weight"]["lr"] == 0.5**2
    assert by_name["backbone.layers.1.mlp.fc1.weight"]["lr"] == 0.5**1
    assert by_name["heads.tumour.classifier.weight"]["lr"] == 1.0
    assert by_name["backbone.layernorm.weight"]["lr"] == 1.0
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert backbone_depth("backbone.layers.11.mlp.fc1.weight", 12) == 12


def test_frozen_parameters_are_left_out_and_fused_adamw_is_used() -> None:
    model = MTLModel(tiny_config())
    model.backbone.requires_grad_(False)
    opt = build_optimizer(model, OptimizerSection(), num_layers=2)
    params = [p for g in opt.param_groups for p in g["params"]]
    assert len(params) == len(list(model.heads.parameters()))
    assert opt.defaults["fused"] is True


@pytest.mark.parametrize("name", ["cosine", "linear", "constant"])
def test_schedule_warms_up_then_decays_and_restarts_each_phase(name: str) -> None:
    schedule = ScheduleSection(name=name, warmup_steps=2)
    f = [phase_lr_factor(s, [10, 6], schedule) for s in range(16)]
    assert f[0] == pytest.approx(1 / 3) and f[1] == pytest.approx(2 / 3) and f[2] == 1.0
    if name == "cosine":
        assert f[6] == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    elif name == "linear":
        assert f[6] == pytest.approx(1 - 4 / 8)
    else:
        assert f[6] == 1.0
    assert f[10] == pytest.approx(1 / 3)  # second phase: warm-up again


def test_lr_values_reach_the_optimizer(tmp_path) -> None:
    from mtl_hf.training.optim import set_learning_rates

    model = MTLModel(tiny_config())
    opt = build_optimizer(model, OptimizerSection(lr=0.01, layer_decay=0.5), num_layers=2)
    set_learning_rates(opt, 0.01, 0.25)
    lrs = sorted({round(g["lr"], 12) for g in opt.param_groups})
    assert lrs == [round(0.01 * 0.25 * s, 12) for s in (0.125, 0.25, 0.5, 1.0)]
    assert torch.is_tensor(opt.param_groups[0]["params"][0])
