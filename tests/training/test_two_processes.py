"""A real two-process DDP run on the CPU (gloo): same weights on both ranks, each validation sample once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mtl_hf import MTLConfig, MTLModel
from mtl_hf.training.checkpointing import list_checkpoints
from mtl_hf.training.evaluation_loop import roc_auc
from mtl_hf.training.metrics_log import read_metrics
from tests.training.synthetic import TINY_BACKBONE, SquaresDataset, collate


@pytest.mark.two_processes("training")  # tests/training/ddp_check.py under two processes
def test_two_processes_agree_and_validate_every_sample_once(two_process_run: Path) -> None:
    out = two_process_run

    ranks = [json.loads((out / f"rank{i}.json").read_text()) for i in range(2)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    assert ranks[0]["sums"] == ranks[1]["sums"]

    # 7 validation samples over 2 processes: 4 per rank with one padded duplicate, counted once.
    val = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "val"]
    assert [r["n/tumour"] for r in val] == [7, 7]
    # The logged ROC AUC is that of the epoch-end weights on exactly those 7 samples.
    model = MTLModel(MTLConfig(
        backbone_config=TINY_BACKBONE,
        tasks={"tumour": {"type": "binary_classification"}, "mim": {"type": "mim", "mask_patch_size": 16}},
    )).eval()  # fmt: skip
    model.load_state_dict(load_file(list_checkpoints(out)[-1] / "model.safetensors"))
    batch = collate([SquaresDataset(7, 1, offset=100)[i] for i in range(7)])
    with torch.no_grad():
        probs = model(batch["pixel_values"]).logits["tumour"].sigmoid().numpy()
    expected = roc_auc(probs, batch["labels"]["tumour"].numpy(), "binary")
    assert abs(val[-1]["roc_auc/tumour"] - expected) < 1e-6
    test = json.loads((out / "test_metrics.json").read_text())
    assert test["tumour"]["n_samples"] == 9
    # Only the main process logs to the trackers: one TensorBoard event file, its losses metrics.jsonl's.
    (events,) = (out / "logs" / out.name).glob("events.out.tfevents.*")
    logged = EventAccumulator(str(events), size_guidance={"scalars": 0}).Reload().Scalars("loss")
    train_rows = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"]
    assert [e.step for e in logged] == [r["step"] for r in train_rows]
    assert [e.value for e in logged] == pytest.approx([r["loss"] for r in train_rows], rel=1e-6)
