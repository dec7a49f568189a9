"""SharedFeatureRecorder keeps exactly the shared features the heads read in the latest training pass."""

from __future__ import annotations

import pytest
import torch

from mtl_hf.weighting import SharedFeatureRecorder
from tests.weighting.helpers import GRID, batches, plain_context, tiny_model


def test_recorder_keeps_each_view_read_by_the_heads_once() -> None:
    model = tiny_model({"type": "fixed"})  # tumour and grade read the clean view, mim the masked view
    recorder = SharedFeatureRecorder(model.heads.values(), owner=model)
    batch = batches(2, 2)
    out = model(**batch[0])
    assert len(recorder.features) == 2
    assert torch.equal(recorder.features[0], out.last_hidden_state)
    assert recorder.features[1].shape == (2, 1 + GRID, 32)
    first = recorder.features
    model(**batch[1])
    assert len(recorder.features) == 2 and recorder.features[0] is not first[0]  # a fresh record
    with torch.no_grad():
        model.eval()
        model(batch[0]["pixel_values"])
    assert recorder.features == []  # nothing kept from passes without gradients
    recorder.remove()
    model.train()
    model(**batch[0])
    assert recorder.features == []


def test_feature_mode_rejects_features_that_miss_a_task() -> None:
    model = tiny_model({"type": "mgda", "gradients": "features"})
    recorder = SharedFeatureRecorder([model.heads["tumour"]], owner=model)  # misses the masked view
    out = model(**batches(1, 2)[0])
    context = plain_context(model).step(sync_gradients=True, shared_features=recorder.features)
    with pytest.raises(ValueError, match="task 'mim': its loss does not depend on"):
        model.weighter.backward(out.task_losses, out.loss, context)
