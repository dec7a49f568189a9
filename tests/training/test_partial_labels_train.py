"""A training run on partially labelled data (one process, the real loop): the task's loss, validation and
test metrics cover its labelled samples only, checked against the best model's predictions by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from sklearn.metrics import roc_auc_score
from transformers import AutoModel

from mtl_hf.options import from_dict
from mtl_hf.train import train
from mtl_hf.training.config import RunConfig
from mtl_hf.training.inputs import TrainingData
from tests.training.synthetic import SquaresDataset, base_config, collate, make_data


def unlabelled(example: dict[str, Any]) -> bool:
    """About a third of the samples, chosen by their pixels (the same whatever the batch)."""
    return round(float(example["pixel_values"].sum()) * 1000) % 3 == 0


def collate_partial(examples: list[dict[str, Any]]) -> dict[str, Any]:
    batch = collate(examples)
    batch["labels"]["tumour"][torch.tensor([unlabelled(e) for e in examples])] = math.nan
    return batch


def test_training_and_evaluation_use_the_labelled_samples(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data = make_data(n_train=24, n_val=10, n_test=12)
    data = TrainingData(**{**data.__dict__, "collate_fn": collate_partial})
    config = from_dict(RunConfig, base_config(str(tmp_path / "run"), epochs=2, strategy="mtl"))
    result = train(config, data)
    assert result.state.finished
    out = tmp_path / "run"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss/tumour"]) for r in rows if r["split"] == "train" and "loss/tumour" in r)

    test = SquaresDataset(12, 2, offset=200)
    batch = collate_partial([test[i] for i in range(12)])
    model = AutoModel.from_pretrained(out / "best_model").eval()
    with torch.no_grad():
        scores = model(batch["pixel_values"]).logits["tumour"].sigmoid()
    labels = batch["labels"]["tumour"]
    keep = ~labels.isnan()
    assert 0 < int(keep.sum()) < 12
    metrics = json.loads((out / "test_metrics.json").read_text())["tumour"]
    assert metrics["n_samples"] == int(keep.sum())
    assert abs(metrics["roc_auc"] - roc_auc_score(labels[keep].numpy(), scores[keep].numpy())) < 1e-9
