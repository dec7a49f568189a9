"""Weighter state is saved with the model (safetensors) and with Accelerate checkpoints; resume is exact."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator
from transformers import AutoModel

from mtl_hf import MTLModel
from mtl_hf.weighting import BackwardContext
from tests.weighting.helpers import FeatureRecorder, batches, micro_step, plain_context, tiny_model

STATEFUL = [
    {"type": "uncertainty"},
    {"type": "dwa"},
    {"type": "rlw"},
    {"type": "famo"},
    {"type": "gradnorm"},
    {"type": "gradnorm", "gradients": "parameters"},
    {"type": "pcgrad"},
    {"type": "nash_mtl", "gradients": "features"},
]


def train(model: MTLModel, data: list, epoch_every: int = 2) -> list[dict[str, float]]:
    model.train()  # from_pretrained returns a model in eval mode
    recorder = FeatureRecorder(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    context = plain_context(model)
    logged = []
    for i, batch in enumerate(data):
        weights, losses = micro_step(model, model.weighter, context, recorder, batch)
        optimizer.step()
        optimizer.zero_grad()
        model.weighter.on_step_end(losses)
        if (i + 1) % epoch_every == 0:
            model.weighter.on_epoch_end(i // epoch_every, losses)
        logged.append({k: float(v) for k, v in weights.items()})
    recorder.remove()
    return logged


@pytest.mark.parametrize("weighting", STATEFUL, ids=lambda w: "-".join(str(v) for v in w.values()))
def test_weighter_state_round_trips_through_save_pretrained_and_resume_is_exact(weighting, tmp_path) -> None:
    data = batches(8, 4)
    model = tiny_model(weighting)
    train(model, data[:4])
    state = {k: v.clone() for k, v in model.weighter.state_dict().items()}
    assert state, "a stateful weighter keeps its state in parameters or buffers"
    initial = tiny_model(weighting).weighter.state_dict()
    assert any(not torch.equal(state[k], initial[k]) for k in state), "the state changed during training"

    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, MTLModel)
    for key, value in state.items():
        assert torch.equal(loaded.weighter.state_dict()[key], value), key

    logged_a = train(model, data[4:])
    logged_b = train(loaded, data[4:])
    for step_a, step_b in zip(logged_a, logged_b, strict=True):
        assert step_a == pytest.approx(step_b, rel=1e-6)
    loaded_params = dict(loaded.named_parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, loaded_params[name], msg=name)
    for key, value in model.weighter.state_dict().items():
        torch.testing.assert_close(loaded.weighter.state_dict()[key], value, msg=key)


def test_weighter_state_is_in_accelerate_checkpoints(tmp_path) -> None:
    weighting = {"type": "famo"}
    accelerator = Accelerator(cpu=True)
    model = tiny_model(weighting)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    model, optimizer = accelerator.prepare(model, optimizer)
    recorder = FeatureRecorder(model)
    context = BackwardContext.from_accelerator(accelerator, model)
    for batch in batches(3, 4):
        with accelerator.accumulate(model):
            _, losses = micro_step(
                model, model.weighter, context, recorder, batch, accelerator.sync_gradients
            )
            optimizer.step()
            optimizer.zero_grad()
        model.weighter.on_step_end(losses)
    saved = {k: v.clone() for k, v in model.weighter.state_dict().items()}
    accelerator.save_state(str(tmp_path / "checkpoint"))

    fresh = Accelerator(cpu=True)
    other = tiny_model(weighting, seed=5)
    other_opt = torch.optim.SGD(other.parameters(), lr=0.05)
    other, other_opt = fresh.prepare(other, other_opt)
    assert not torch.equal(other.weighter.logits, saved["logits"])
    fresh.load_state(str(tmp_path / "checkpoint"))
    for key, value in saved.items():
        assert torch.equal(other.weighter.state_dict()[key], value), key
