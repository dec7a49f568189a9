"""``transformers.Trainer`` trains an MTLModel on an mtl-hf data set: loss from the model, metrics
through ``compute_metrics`` (checked against scikit-learn on the model's own predictions), checkpoints
that ``AutoModel`` loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from transformers import AutoModel, Trainer

from mtl_hf import MTLConfig, MTLImageProcessor, MTLModel
from mtl_hf.data import DataConfig, MTLDataCollator, apply_transforms, prepare_datasets
from mtl_hf.options import from_dict
from mtl_hf.training.hf_trainer import (
    TrainerCollator,
    check_trainer_support,
    compute_metrics_for,
    trainer_arguments,
)
from tests.conftest import tiny_backbone
from tests.data.files import write_csv, write_png


def squares(root: Path, patients: int = 12, per_patient: int = 4) -> DataConfig:
    """32-px grey PNGs, a bright square on the positives; a manifest with patient ids."""
    rng = np.random.default_rng(0)
    rows = []
    for p in range(patients):
        for k in range(per_patient):
            image = rng.integers(0, 90, (32, 32)).astype(np.uint8)
            label = (p + k) % 2
            if label:
                r, c = rng.integers(0, 22, 2)
                image[r : r + 10, c : c + 10] = 230
            write_png(root / f"p{p}_{k}.png", image)
            rows.append({"path": f"p{p}_{k}.png", "patient_id": f"p{p}", "finding": label})
    write_csv(root / "manifest.csv", rows)
    raw = {
        "kind": "images",
        "root": str(root),
        "image_size": 32,
        "split": {"train": 0.5, "validation": 0.5, "test": 0.0},
        "images": {
            "manifest": "manifest.csv",
            "targets": {"tumour": {"kind": "binary", "columns": ["finding"]}},
        },
    }
    return from_dict(DataConfig, raw)


def test_trainer_trains_evaluates_and_saves(tmp_path: Path) -> None:
    config = squares(tmp_path / "data")
    prepared = prepare_datasets(config, tmp_path / "cache")
    splits = apply_transforms(prepared.datasets, config, MTLImageProcessor(size=32, num_channels=1))
    collator = MTLDataCollator.for_dataset(prepared.datasets["train"], {"tumour": "tumour"})
    torch.manual_seed(0)
    model = MTLModel(
        MTLConfig(
            backbone_config=tiny_backbone(image_size=32, patch_size=8, num_channels=1),
            tasks={
                "tumour": {"type": "binary_classification"},
                "mim": {"type": "mim", "mask_patch_size": 16},
            },
            weighting={"type": "fixed", "weights": {"mim": 0.5}},
        )
    )
    args = trainer_arguments(
        str(tmp_path / "out"),
        max_steps=24,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=7,
        learning_rate=3e-3,
        logging_steps=1,
        save_steps=24,
        eval_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        data_collator=TrainerCollator(collator),
        compute_metrics=compute_metrics_for(model),
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 24
    assert np.mean(losses[-6:]) < 0.8 * np.mean(losses[:6])

    metrics = trainer.evaluate()
    # Independent check: the model's own predictions on the validation split, scored by scikit-learn.
    model.eval()
    rows = [splits["validation"][i] for i in range(len(splits["validation"]))]
    batch = collator(rows)
    with torch.no_grad():
        out = model(batch["pixel_values"], labels={"tumour": batch["labels"]["tumour"]})
    expected_auc = roc_auc_score(batch["labels"]["tumour"].numpy(), out.logits["tumour"].numpy())
    assert metrics["eval_roc_auc/tumour"] == pytest.approx(expected_auc, abs=1e-9)
    assert metrics["eval_loss"] == pytest.approx(
        float(out.loss), rel=1e-4
    )  # 7 + remainder batches, same mean
    assert expected_auc > 0.8

    checkpoint = tmp_path / "out" / "checkpoint-24"
    assert (checkpoint / "model.safetensors").exists()
    loaded = AutoModel.from_pretrained(checkpoint)
    assert isinstance(loaded, MTLModel)
    trained = model.state_dict()
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, trained[name]), name
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["global_step"] == 24


def test_weighters_that_need_the_training_loop_are_refused() -> None:
    config = {"backbone_config": tiny_backbone(), "tasks": {"a": {"type": "binary_classification"}}}
    check_trainer_support(MTLModel(MTLConfig(**config, weighting={"type": "uncertainty"})))
    with pytest.raises(ValueError, match=r"weighting 'pcgrad' hooks into the training loop \(backward"):
        compute_metrics_for(MTLModel(MTLConfig(**config, weighting={"type": "pcgrad"})))
