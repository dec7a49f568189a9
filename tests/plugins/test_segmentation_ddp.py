"""The segmentation head under a real two-process DDP run: Dice over every validation image once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mtl_hf import MTLConfig, MTLModel
from mtl_hf.training.checkpointing import list_checkpoints
from mtl_hf.training.metrics_log import read_metrics
from tests.training.ddp_check import LESION
from tests.training.synthetic import TINY_BACKBONE, SquaresDataset


@pytest.mark.two_processes("segmentation")  # tests/training/ddp_check.py with the plugin's head
def test_two_processes_report_the_dice_of_each_validation_image_once(two_process_run: Path) -> None:
    out = two_process_run

    ranks = [json.loads((out / f"rank{i}.json").read_text()) for i in range(2)]
    assert ranks[0]["world"] == 2 and ranks[0]["sums"] == ranks[1]["sums"]

    # 7 validation images over 2 processes: 4 per rank, one padded duplicate dropped before the sums.
    val = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "val"]
    assert [r["n/lesion"] for r in val] == [7, 7]
    tasks = {"tumour": {"type": "binary_classification"}, "mim": {"type": "mim", "mask_patch_size": 16}}
    model = MTLModel(MTLConfig(backbone_config=TINY_BACKBONE, tasks={**tasks, "lesion": LESION})).eval()
    model.load_state_dict(load_file(list_checkpoints(out)[-1] / "model.safetensors"))
    data = SquaresDataset(7, 1, offset=100)
    with torch.no_grad():
        logits = model(data.images).logits["lesion"].numpy()
    pred, true = logits > 0, data.masks.numpy() > 0.5  # sigmoid(x) > 0.5 exactly when x > 0
    sizes = pred.sum((1, 2)) + true.sum((1, 2))
    per_image = np.where(sizes > 0, 2 * (pred & true).sum((1, 2)) / np.maximum(sizes, 1), 1.0)
    assert val[-1]["dice/lesion"] == pytest.approx(per_image.mean(), abs=1e-9)
    assert val[-1]["dice_global/lesion"] == pytest.approx(2 * (pred & true).sum() / (pred.sum() + true.sum()))

    selection = json.loads((out / "best_model" / "selection.json").read_text())
    assert selection["metric"] == "dice" and selection["value"] == max(r["dice/lesion"] for r in val)
    test = json.loads((out / "test_metrics.json").read_text())
    assert test["lesion"]["n_samples"] == 9 and test["lesion"]["n_groups"] == 3
