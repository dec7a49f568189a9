"""Classification + SimMIM + segmentation (the plugin head) trained jointly on the demo data with
``mtl-hf train``'s loop; the evaluation reports Dice, checked against a recomputation by hand."""

from __future__ import annotations

import csv
import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoModel

from mtl_hf import MTLConfig
from mtl_hf.data import DataConfig, DataError, MTLDataCollator, build_demo_data
from mtl_hf.options import from_dict
from mtl_hf.train import train
from mtl_hf.training.config import RunConfig, load_config
from mtl_hf.training.inputs import build_training_data
from mtl_hf.training.plots import curves

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo-brats-segmentation.yaml"


@pytest.fixture(autouse=True)
def _plugin(segmentation_plugin: metadata.Distribution) -> None:
    """Every test here runs with the plugin installed."""


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    # 20 slices a patient (the demo's own default is 10): tumour-free slices in every split
    build_demo_data(out, seed=0, brats_patients=10, brats_slices=20, ultrasound_patients=4)
    return out


def test_the_shipped_config_validates() -> None:
    config = load_config(CONFIG)
    from_dict(DataConfig, config.data, "data")
    assert config.task_columns == {"tumour": "tumour", "lesion": "mask"}
    model = MTLConfig(backbone_config=config.model.backbone_config, tasks=config.model.tasks)
    assert model.task_names == ["tumour", "mim", "lesion"]


def tiny_config(demo_data: Path, tmp_path: Path) -> RunConfig:
    """The shipped config, shrunk: 32 px, one 32-wide layer, two epochs."""
    raw = yaml.safe_load(CONFIG.read_text())
    raw["output_dir"] = str(tmp_path / "run")
    raw["cache_dir"] = str(tmp_path / "cache")
    raw["data"]["root"] = str(demo_data / "brats")
    raw["data"]["image_size"] = 32
    raw["model"]["backbone_config"].update(
        {"hidden_size": 32, "num_hidden_layers": 2, "intermediate_size": 64, "image_size": 32}
    )
    raw["model"]["tasks"]["lesion"].update({"layers": [1, 2], "decoder_channels": [16, 8]})
    raw["training"].update({"epochs": 2, "batch_size": 16, "log_every_steps": 2, "monitor": "lesion"})
    raw["training"]["bootstrap_resamples"] = 300
    return from_dict(RunConfig, raw)


def hand_dice(logits: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-image Dice of ``sigmoid(logits) > 0.5`` (1 when both masks are empty), and the pooled Dice."""
    pred = 1.0 / (1.0 + np.exp(-logits)) > 0.5
    true = masks > 0.5
    per_image = []
    for p, t in zip(pred, true, strict=True):
        total = p.sum() + t.sum()
        per_image.append(1.0 if total == 0 else 2.0 * (p & t).sum() / total)
    return np.array(per_image), 2.0 * (pred & true).sum() / (pred.sum() + true.sum())


def test_classification_mim_and_segmentation_train_jointly_and_report_dice(
    demo_data: Path, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    config = tiny_config(demo_data, tmp_path)
    result = train(config)
    out = Path(config.output_dir)

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["split"] == "train"]
    val_rows = [r for r in rows if r["split"] == "val"]
    assert {"loss/tumour", "loss/mim", "loss/lesion", "weight/lesion"} <= set(train_rows[0])
    assert len(val_rows) == 2
    for r in val_rows:
        assert {"roc_auc/tumour", "mse/mim", "dice/lesion", "dice_global/lesion"} <= set(r)
        assert 0.0 <= r["dice/lesion"] <= 1.0 and r["n/lesion"] == r["n/tumour"]

    # the best model was selected by validation Dice, as training.monitor asked
    selection = json.loads((out / "best_model" / "selection.json").read_text())
    assert selection["monitor"] == "lesion" and selection["metric"] == "dice"
    assert selection["value"] == pytest.approx(max(r["dice/lesion"] for r in val_rows))

    # the test Dice is that of the best model, recomputed here image by image
    model = AutoModel.from_pretrained(out / "best_model").eval()
    test_split = build_training_data(config, model).test
    assert test_split is not None
    logits, masks, patients = [], [], []
    with torch.no_grad():
        for start in range(0, len(test_split), 16):
            rows_ = [test_split[i] for i in range(start, min(start + 16, len(test_split)))]
            images = torch.stack([torch.as_tensor(r["pixel_values"]) for r in rows_])
            logits.append(model(pixel_values=images).logits["lesion"].numpy())
            masks.append(np.stack([np.asarray(r["lesion_mask"], dtype=np.float64) for r in rows_]))
            patients += [r["patient_id"] for r in rows_]
    per_image, pooled = hand_dice(np.concatenate(logits), np.concatenate(masks))
    assert np.concatenate(masks).sum() > 0  # the test slices hold lesions

    test = json.loads((out / "test_metrics.json").read_text())
    lesion = test["lesion"]
    assert lesion["kind"] == "segmentation"
    assert lesion["dice"] == pytest.approx(per_image.mean(), abs=1e-9)
    assert lesion["dice_global"] == pytest.approx(pooled, abs=1e-9)
    assert lesion["n_samples"] == len(per_image) and lesion["n_groups"] == len(set(patients))
    assert lesion["dice_low"] <= lesion["dice"] <= lesion["dice_high"]
    assert lesion["n_resamples"] == 300
    # the per-slice statistics kept for paired comparisons: the hand Dice of each slice, by sample id
    stats = list(csv.DictReader((out / "test_statistics_lesion.csv").open()))
    assert [r["patient_id"] for r in stats] == [str(p) for p in patients]
    assert [float(r["dice"]) for r in stats] == pytest.approx(per_image.tolist(), abs=1e-12)
    assert "roc_auc" in test["tumour"] and "mim" not in test
    assert (out / "plots" / "lesion_test_examples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"dice/lesion", "dice_global/lesion", "roc_auc/tumour"} <= set(
        curves(out / "metrics.jsonl")["val"]
    )
    assert result.state.finished


def test_a_sample_without_mask_is_named(demo_data: Path) -> None:
    collate = MTLDataCollator({"lesion": "mask"}, target_kinds={})
    rows = [
        {"pixel_values": torch.zeros(1, 4, 4), "patient_id": "p1", "sample_id": "p1_z070",
         "lesion_mask": torch.ones(4, 4, dtype=torch.bool), "has_lesion_mask": True},
        {"pixel_values": torch.zeros(1, 4, 4), "patient_id": "p2", "sample_id": "p2_z071",
         "lesion_mask": torch.zeros(4, 4, dtype=torch.bool), "has_lesion_mask": False},
    ]  # fmt: skip
    with pytest.raises(DataError, match=r"p2_z071: no segmentation mask, but a task reads the 'mask' column"):
        collate(rows)
    rows[1]["has_lesion_mask"] = True
    labels = collate(rows)["labels"]["lesion"]
    assert labels.dtype == torch.float32 and labels.tolist() == [[[1.0] * 4] * 4, [[0.0] * 4] * 4]


def test_the_example_figure_shows_the_largest_lesions_with_their_dice(tmp_path: Path) -> None:
    from mtl_hf_segmentation import plot_segmentation_examples

    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(5, 16, 16)
    masks[1, 2:6, 2:6] = 1  # 16 pixels
    masks[3, 4:12, 4:12] = 1  # 64 pixels
    masks[4, 0:3, 0:3] = 1  # 9 pixels
    logits = torch.randn(5, 16, 16, generator=g) * 4
    panels = plot_segmentation_examples(torch.randn(5, 1, 16, 16), logits, masks, tmp_path / "x.png", count=4)
    assert [p.index for p in panels] == [3, 1, 4, 0]  # largest lesions first, then lesion-free ones
    per_image, _ = hand_dice(logits.numpy(), masks.numpy())
    assert [p.dice for p in panels] == pytest.approx(per_image[[3, 1, 4, 0]].tolist())
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_lists_the_segmentation_dice_of_every_run(demo_data: Path, tmp_path: Path) -> None:
    from mtl_hf.experiments.compare import CompareConfig, compare

    torch.set_num_threads(1)
    base = yaml.safe_load(CONFIG.read_text())
    config = tiny_config(demo_data, tmp_path)
    base.update({"data": config.data, "cache_dir": config.cache_dir})
    base["model"] = {"backbone_config": config.model.backbone_config, "tasks": config.model.tasks}
    base["training"].update({"epochs": 1, "batch_size": 16, "monitor": "lesion"})
    compare_config = from_dict(
        CompareConfig,
        {"output_dir": str(tmp_path / "cmp"), "grid": {"strategies": ["stl", "mtl"], "seeds": [0]},
         "bootstrap_resamples": 100, "attention": False},
    )  # fmt: skip
    text = compare(compare_config, base)
    rows = [r for r in csv.DictReader((tmp_path / "cmp" / "metrics.csv").open()) if r["task"] == "lesion"]
    assert {(r["strategy"], r["metric"]) for r in rows} == {
        ("stl", "dice"), ("stl", "dice_global"), ("mtl", "dice"), ("mtl", "dice_global"),
    }  # fmt: skip
    for r in rows:  # each row is its run's test_metrics.json
        lesion = json.loads((Path(r["run_dir"]) / "test_metrics.json").read_text())["lesion"]
        assert float(r["value"]) == pytest.approx(lesion[r["metric"]])
        assert float(r["lower"]) <= float(r["value"]) <= float(r["upper"])
        assert (lesion[f"{r['metric']}_low"], lesion[f"{r['metric']}_high"]) == (
            float(r["lower"]),
            float(r["upper"]),
        )
    # the paired test: the difference of the two runs' Dice on the same test slices, with an interval
    (comp,) = [
        r
        for r in csv.DictReader((tmp_path / "cmp" / "paired_differences.csv").open())
        if r["metric"] == "dice"
    ]
    assert (comp["model_a"], comp["model_b"], comp["task"]) == ("mtl", "stl", "lesion")  # as "MTL vs STL"
    dice = {r["strategy"]: float(r["value"]) for r in rows if r["metric"] == "dice"}
    assert float(comp["difference"]) == pytest.approx(dice["mtl"] - dice["stl"])
    assert float(comp["low"]) <= float(comp["difference"]) <= float(comp["high"])
    assert 0.0 <= float(comp["p_value"]) <= 1.0 and int(comp["n_test"]) == 40
    assert "Every task and metric (test split)" in text and "mtl vs stl" in text
    assert "## Every task and metric (test split)" in (tmp_path / "cmp" / "results.md").read_text()
