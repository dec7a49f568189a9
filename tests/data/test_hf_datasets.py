"""``kind: hf_dataset``: 🤗 datasets written by ``datasets`` itself (save_to_disk, parquet) and a real
imagefolder of PNGs, read into the cache with their labels, patients and masks; a Hub id offline; a
tiny training run from a saved data set."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from mtl_hf.data import (
    DataConfig,
    DataError,
    DataWarning,
    build_cache,
    decode_image,
    decode_mask,
    prepare_datasets,
)
from mtl_hf.options import from_dict

from .files import write_png

CLASSES = ["healthy", "myopathy", "neuropathy"]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def make_dataset(n: int = 12, seed: int = 0) -> tuple[datasets.Dataset, list[dict[str, Any]]]:
    """``n`` grey 16x16 images of ``n // 2`` patients with a class, a 0/1 flag, findings and a mask."""
    rng = np.random.default_rng(seed)
    truth = []
    for i in range(n):
        image = rng.integers(0, 255, (16, 16), dtype=np.uint8)
        mask = (rng.random((16, 16)) > 0.7).astype(np.uint8)
        truth.append({
            "image": image, "mask": mask, "diagnosis": CLASSES[i % 3], "lesion": i % 2,
            "findings": [CLASSES[j] for j in range(3) if (i >> j) & 1], "patient": f"p{i // 2:02d}",
        })  # fmt: skip
    features = datasets.Features({
        "image": datasets.Image(), "mask": datasets.Image(),
        "diagnosis": datasets.ClassLabel(names=CLASSES), "lesion": datasets.Value("int64"),
        "findings": datasets.List(datasets.ClassLabel(names=CLASSES)), "patient": datasets.Value("string"),
    })  # fmt: skip
    dataset = datasets.Dataset.from_dict(
        {
            "image": [{"bytes": png(t["image"]), "path": None} for t in truth],
            "mask": [{"bytes": png(t["mask"]), "path": None} for t in truth],
            "diagnosis": [CLASSES.index(t["diagnosis"]) for t in truth],
            "lesion": [t["lesion"] for t in truth],
            "findings": [[CLASSES.index(c) for c in t["findings"]] for t in truth],
            "patient": [t["patient"] for t in truth],
        },
        features=features,
    )
    return dataset, truth


TARGETS = {
    "diagnosis": {"kind": "multiclass", "columns": ["diagnosis"]},
    "pathology": {"kind": "binary", "columns": ["diagnosis"], "negative": ["healthy"]},
    "lesion": {"kind": "binary", "columns": ["lesion"]},
    "findings": {"kind": "multilabel", "columns": ["findings"], "classes": CLASSES},
}


def config(root: Path | str, data: dict[str, Any] | None = None, **options: Any) -> DataConfig:
    hf = {"patient_column": "patient", "mask_column": "mask", "targets": TARGETS, **options}
    raw = {"kind": "hf_dataset", "root": str(root), "hf_dataset": hf, **(data or {})}
    return from_dict(DataConfig, raw, "data")


def check_rows(cached: datasets.Dataset, truth: list[dict[str, Any]]) -> None:
    """Every cached row is its source row: pixels, mask, patient and each target as hand-encoded."""
    assert len(cached) == len(truth)
    assert cached.features["diagnosis"].names == CLASSES
    for row in cached:
        t = truth[int(row["sample_id"].removeprefix("row-"))]
        np.testing.assert_array_equal(decode_image(row), t["image"])
        np.testing.assert_array_equal(decode_mask(row), t["mask"])
        assert row["patient_id"] == t["patient"]
        assert CLASSES[row["diagnosis"]] == t["diagnosis"]
        assert row["pathology"] == int(t["diagnosis"] != "healthy")
        assert row["lesion"] == t["lesion"]
        assert [CLASSES[j] for j in row["findings"]] == t["findings"]


def test_save_to_disk_dataset_dict_is_read_whole(tmp_path: Path) -> None:
    dataset, truth = make_dataset()
    datasets.DatasetDict(
        {"train": dataset.select(range(8)), "test": dataset.select(range(8, 12))}
    ).save_to_disk(str(tmp_path / "saved"))
    cached, summary = build_cache(config(tmp_path / "saved"), tmp_path / "cache")
    assert summary.num_samples == 12 and summary.num_patients == 6 and not summary.cache_hit
    check_rows(cached, truth)  # both splits, in order: rows 0-7 then 8-11
    again, summary = build_cache(config(tmp_path / "saved"), tmp_path / "cache")
    assert summary.cache_hit and again["sample_id"] == cached["sample_id"]

    only_test, _ = build_cache(config(tmp_path / "saved", split="test"), tmp_path / "cache")
    assert sorted(set(only_test["patient_id"])) == ["p04", "p05"]
    with pytest.raises(DataError, match=r"no split 'validation'; splits: train, test"):
        build_cache(config(tmp_path / "saved", split="validation"), tmp_path / "cache")


def test_parquet_file_and_folder(tmp_path: Path) -> None:
    dataset, truth = make_dataset(seed=1)
    (tmp_path / "pq").mkdir()
    dataset.to_parquet(str(tmp_path / "pq" / "data.parquet"))
    for root in (tmp_path / "pq" / "data.parquet", tmp_path / "pq"):
        cached, _ = build_cache(config(root), tmp_path / "cache")
        check_rows(cached, truth)


def test_imagefolder_of_pngs(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    expected = {}
    for cls in ("benign", "malignant"):
        for k in range(3):
            arr = rng.integers(0, 255, (10, 12), dtype=np.uint8)
            write_png(tmp_path / "folder" / cls / f"{cls}_{k}.png", arr)
            expected[arr.tobytes()] = cls
    targets = {
        "tumour": {"kind": "multiclass", "columns": ["label"]},
        "malignant": {"kind": "binary", "columns": ["label"], "positive": ["malignant"]},
    }
    raw = {"kind": "hf_dataset", "root": str(tmp_path / "folder"), "hf_dataset": {"targets": targets}}
    with pytest.warns(DataWarning, match="no patient ids"):
        cached, summary = build_cache(from_dict(DataConfig, raw), tmp_path / "cache")
    assert summary.num_samples == 6 and summary.num_patients == 6
    assert cached.features["tumour"].names == ["benign", "malignant"]
    for row in cached:
        cls = expected[decode_image(row).tobytes()]  # each file's own pixels, with its folder's class
        assert cached.features["tumour"].names[row["tumour"]] == cls
        assert row["malignant"] == int(cls == "malignant")
        assert row["patient_id"] == row["sample_id"]


def test_a_path_cell_must_stay_inside_the_root(tmp_path: Path) -> None:
    """A cell that names a file (not its bytes) is read only from under data.root."""
    import pyarrow.parquet as pq

    outside = write_png(tmp_path / "elsewhere.png", np.full((8, 8), 7, dtype=np.uint8))
    dataset = datasets.Dataset.from_dict(
        {"image": [str(outside)], "lesion": [1]},
        features=datasets.Features({"image": datasets.Image(), "lesion": datasets.Value("int64")}),
    )
    (tmp_path / "pq").mkdir()
    pq.write_table(dataset.data.table, tmp_path / "pq" / "paths.parquet")  # the cell keeps the path only
    raw = {"kind": "hf_dataset", "root": str(tmp_path / "pq"),
           "hf_dataset": {"targets": {"lesion": {"columns": ["lesion"]}}}}  # fmt: skip
    with pytest.warns(DataWarning), pytest.raises(DataError, match=r"pq \(row 0\).*outside"):
        build_cache(from_dict(DataConfig, raw), tmp_path / "cache")
    with pytest.warns(DataWarning):
        cached, _ = build_cache(
            from_dict(DataConfig, {**raw, "allow_outside_root": True}), tmp_path / "cache"
        )
    np.testing.assert_array_equal(decode_image(cached[0]), np.full((8, 8), 7, dtype=np.uint8))


def test_bad_input_names_the_row_or_column(tmp_path: Path) -> None:
    dataset, _ = make_dataset()
    dataset.save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(DataError, match=r"no column 'patient_id'; columns: image, mask, diagnosis"):
        build_cache(config(tmp_path / "saved", patient_column="patient_id"), tmp_path / "cache")
    declared = {
        **TARGETS,
        "diagnosis": {"kind": "multiclass", "columns": ["diagnosis"], "classes": ["healthy"]},
    }
    with pytest.raises(DataError, match=r"saved \(row 1\): target 'diagnosis': class 'myopathy' is not in"):
        build_cache(config(tmp_path / "saved", targets=declared), tmp_path / "cache")

    broken = dataset.cast_column("image", datasets.Image(decode=False))
    cells = list(broken["image"])
    cells[3] = {"bytes": b"\x89PNG\r\n\x1a\n truncated", "path": None}
    broken = broken.remove_columns("image").add_column("image", cells, feature=datasets.Image())
    broken.save_to_disk(str(tmp_path / "broken"))
    with pytest.raises(DataError, match=r"broken \(row 3\)"):
        build_cache(config(tmp_path / "broken"), tmp_path / "cache")
    with pytest.warns(DataWarning, match=r"skipped .*broken \(row 3\): cannot read image"):
        cached, summary = build_cache(
            config(tmp_path / "broken", data={"skip_bad": True}), tmp_path / "cache"
        )
    assert len(cached) == 11 and "row-3" not in cached["sample_id"]
    assert [s.path for s in summary.skipped] == [f"{tmp_path / 'broken'} (row 3)"]


def test_hub_id_goes_through_load_dataset_and_fails_clearly_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        DataError, match=r"my-lab/muscle-us: cannot load it as a hub dataset \(ConnectionError: .*Hub"
    ):
        build_cache(config("my-lab/muscle-us"), tmp_path / "cache")
    with pytest.raises(DataError, match=r"\./missing: no such file or folder"):
        build_cache(config("./missing"), tmp_path / "cache")


def test_training_from_a_saved_dataset(tmp_path: Path) -> None:
    """A tiny run reads a save_to_disk data set through the cache, splits it by patient and trains."""
    from mtl_hf.train import train
    from mtl_hf.training.config import RunConfig
    from mtl_hf.training.metrics_log import read_metrics
    from tests.conftest import tiny_backbone

    torch.set_num_threads(1)
    dataset, _ = make_dataset(n=40, seed=3)
    dataset.save_to_disk(str(tmp_path / "saved"))
    data = {
        "kind": "hf_dataset",
        "root": str(tmp_path / "saved"),
        "hf_dataset": {"patient_column": "patient", "targets": {"lesion": {"columns": ["lesion"]}}},
        "image_size": 32,
        "split": {"train": 0.6, "validation": 0.2, "test": 0.2},
        "num_proc": 1,
    }
    raw = {
        "output_dir": str(tmp_path / "run"),
        "cache_dir": str(tmp_path / "cache"),
        "model": {
            "backbone_config": tiny_backbone(image_size=32, patch_size=8, num_channels=1),
            "tasks": {"lesion": {"type": "binary_classification"}},
        },
        "data": data,
        "task_columns": {"lesion": "lesion"},
        "training": {
            "strategy": "stl",
            "epochs": 1,
            "batch_size": 4,
            "log_every_steps": 1,
            "bootstrap_resamples": 50,
        },
    }
    config = from_dict(RunConfig, raw)
    prepared = prepare_datasets(config_data := from_dict(DataConfig, data, "data"), tmp_path / "cache")
    patients = {name: set(split["patient_id"]) for name, split in prepared.datasets.items()}
    assert sum(len(p) for p in patients.values()) == 20 and not patients["train"] & patients["test"]
    assert config_data.kind == "hf_dataset"
    out = train(config).output_dir
    rows = list(read_metrics(out / "metrics.jsonl"))
    assert [r["step"] for r in rows if r["split"] == "train"] == list(
        range(1, math.ceil(len(prepared.datasets["train"]) / 4) + 1)
    )
    test = json.loads((out / "test_metrics.json").read_text())
    assert test["lesion"]["n_samples"] == len(prepared.datasets["test"])
