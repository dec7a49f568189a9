"""A tiny learnable image task for training tests: positives carry a bright square; 4 images per patient.

Run as a script to train in a separate process (used by the kill-and-resume and two-process tests):
``python -m tests.training.synthetic CONFIG.yaml [overrides] [--resume]``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from mtl_hf import MTLImageProcessor
from mtl_hf.training.config import RunConfig
from mtl_hf.training.inputs import TrainingData
from tests.conftest import tiny_backbone

TINY_BACKBONE = tiny_backbone(image_size=32, patch_size=8, num_channels=1)


class SquaresDataset(Dataset):
    def __init__(self, n: int, seed: int, offset: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 1, 32, 32, generator=g) * 0.5
        self.labels = torch.arange(n) % 2
        self.masks = torch.zeros(n, 32, 32)  # the square is the lesion
        for i in range(n):
            if self.labels[i]:
                r, c = torch.randint(0, 24, (2,), generator=g).tolist()
                self.images[i, 0, r : r + 8, c : c + 8] += 1.5
                self.masks[i, r : r + 8, c : c + 8] = 1.0
        self.patients = [f"p{offset + i // 4:03d}" for i in range(n)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "pixel_values": self.images[i],
            "label": self.labels[i],
            "mask": self.masks[i],
            "patient_id": self.patients[i],
        }


def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "pixel_values": torch.stack([e["pixel_values"] for e in examples]),
        "labels": {"tumour": torch.stack([e["label"] for e in examples]).float()},
        "patient_id": [e["patient_id"] for e in examples],
    }


def collate_with_masks(examples: list[dict[str, Any]]) -> dict[str, Any]:
    """:func:`collate` plus the squares as ``labels["lesion"]`` for a segmentation task."""
    batch = collate(examples)
    batch["labels"]["lesion"] = torch.stack([e["mask"] for e in examples])
    return batch


def make_data(n_train: int = 24, n_val: int = 10, n_test: int = 12, masks: bool = False) -> TrainingData:
    return TrainingData(
        train=SquaresDataset(n_train, 0),
        validation=SquaresDataset(n_val, 1, offset=100),
        test=SquaresDataset(n_test, 2, offset=200),
        collate_fn=collate_with_masks if masks else collate,
        processor=MTLImageProcessor(size=32, num_channels=1),
        split_manifest_hash="synthetic",
    )


def base_config(output_dir: str, **training: Any) -> dict[str, Any]:
    return {
        "output_dir": output_dir,
        "model": {
            "backbone_config": TINY_BACKBONE,
            "tasks": {
                "tumour": {"type": "binary_classification"},
                "mim": {"type": "mim", "mask_patch_size": 16},
            },
        },
        "training": {
            "epochs": 2,
            "pretrain_epochs": 1,
            "batch_size": 8,
            "log_every_steps": 1,
            "bootstrap_resamples": 200,
            **training,
        },
        "optimizer": {"lr": 1e-3},
    }


def image_manifest_run(
    tmp_path: Path, name: str = "run", split: dict[str, float] | None = None, **training: Any
) -> RunConfig:
    """A run on 40 real PNG files (32 px grey, 2 per patient, positives carry a bright square) read
    through the data layer and its cache; ``training`` as in :func:`base_config`."""
    import numpy as np

    from mtl_hf.options import from_dict
    from tests.data.files import write_csv, write_png

    root = tmp_path / "images"
    if not (root / "manifest.csv").exists():
        rng = np.random.default_rng(0)
        rows = []
        for i in range(40):
            image = rng.normal(90, 30, (32, 32))
            if i % 2:
                image[8:20, 8:20] += 100
            write_png(root / f"img{i:02d}.png", image.clip(0, 255).astype(np.uint8))
            rows.append({"path": f"img{i:02d}.png", "patient": f"p{i // 2:02d}", "label": i % 2})
        write_csv(root / "manifest.csv", rows)
    raw = base_config(str(tmp_path / name), **training)
    raw["model"]["backbone_config"] = dict(TINY_BACKBONE)
    raw["data"] = {
        "kind": "images",
        "root": str(root),
        "images": {
            "manifest": "manifest.csv",
            "patient_column": "patient",
            "targets": {"label": {"kind": "binary", "columns": ["label"]}},
        },
        "split": split or {"train": 0.6, "validation": 0.2, "test": 0.2},
    }
    raw["task_columns"] = {"tumour": "label"}
    raw["cache_dir"] = str(tmp_path / "cache")
    return from_dict(RunConfig, raw)


def main(argv: list[str]) -> int:
    from mtl_hf.train import parse_command_line, train

    torch.set_num_threads(1)
    command = parse_command_line(argv)
    train(command.config, make_data(), resume=command.resume, overwrite=command.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
