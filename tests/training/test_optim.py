"""Optimizer groups, layer-wise decay and the schedule of a phase, against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from mtl_hf import MTLModel
from mtl_hf.training.config import OptimizerSection, ScheduleSection
from mtl_hf.training.optim import backbone_depth, build_optimizer, build_scheduler, parameter_groups
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
def test_schedule_warms_up_then_decays_and_a_resumed_schedule_continues_where_it_was(name: str) -> None:
    model = MTLModel(tiny_config())
    opt = build_optimizer(model, OptimizerSection(lr=0.01, layer_decay=0.5), num_layers=2)
    schedule = ScheduleSection(name=name, warmup_steps=2)
    scheduler = build_scheduler(opt, schedule, total_steps=10)
    factors, groups_at_6 = [], []
    for step in range(10):
        factors.append(opt.param_groups[-1]["lr"] / 0.01)
        if step == 6:
            groups_at_6 = [g["lr"] for g in opt.param_groups]
        opt.step()
        scheduler.step()
    # transformers' warm-up: step / warmup_steps, from zero
    assert factors[:3] == [0.0, pytest.approx(0.5), 1.0]
    expected = {
        "cosine": 0.5 * (1 + math.cos(math.pi * 4 / 8)),
        "linear": 1 - 4 / 8,
        "constant": 1.0,
    }[name]
    assert factors[6] == pytest.approx(expected)
    # every group keeps its layer-wise share of the rate
    assert sorted({round(lr / 0.01 / expected, 9) for lr in groups_at_6}) == [0.125, 0.25, 0.5, 1.0]
    # a schedule rebuilt at step 6 (a resumed run) gives the rate of step 6; one rebuilt at 0 restarts
    build_scheduler(opt, schedule, total_steps=10, done_steps=6)
    assert opt.param_groups[-1]["lr"] / 0.01 == pytest.approx(factors[6])
    build_scheduler(opt, schedule, total_steps=6)
    assert opt.param_groups[-1]["lr"] == 0.0
    assert torch.is_tensor(opt.param_groups[0]["params"][0])
