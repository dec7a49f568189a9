"""Tiny saved models for the inference tests: a folder each, as ``save_pretrained`` writes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtl_hf import MTLImageProcessor, MTLModel
from tests.conftest import tiny_config

THREE_TASKS = {
    "tumour": {"type": "binary_classification"},
    "grade": {"type": "multiclass_classification", "num_classes": 3, "class_names": ["low", "mid", "high"]},
    "findings": {"type": "multilabel_classification", "num_labels": 2, "label_names": ["oedema", "necrosis"]},
    "mim": {"type": "mim"},
}


def save_model(folder: Path, tasks: dict, seed: int = 0) -> Path:
    """Save a tiny 64-px model with ``tasks`` and its processor into ``folder``; return the folder."""
    import torch

    torch.manual_seed(seed)
    model = MTLModel(tiny_config(tasks=tasks))
    with torch.no_grad():  # spread the classifier outputs so probabilities differ between images
        for head in model.heads.values():
            if hasattr(head, "classifier"):
                head.classifier.weight.normal_(0.0, 2.0)
    model.save_pretrained(folder)
    MTLImageProcessor(size=64).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def three_task_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model(tmp_path_factory.mktemp("model"), THREE_TASKS)
