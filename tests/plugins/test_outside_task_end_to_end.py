"""A task of a kind mtl-hf does not know, from a distribution written and pip-installed outside the
package tree, through the whole product: ``mtl-hf train``, ``test_metrics.json``,
``test_predictions.csv``, ``mtl-hf predict``, ``mtl-hf compare`` and the model card of ``mtl-hf push``.

The plugin is written from ``docs/plugins.md`` alone: a count head (Poisson regression on a
``continuous`` manifest column with missing cells; log-rate output, Poisson NLL loss, the expected
count as prediction, MAE and mean Poisson deviance from additive per-sample statistics). Every command
runs in a fresh process that sees the installed distribution; nothing inside ``mtl_hf/`` knows it.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.conftest import tiny_backbone
from tests.data.files import write_csv, write_png
from tests.hub.conftest import TOKEN
from tests.hub.hub_server import HubServer

from .conftest import install_distribution, run_process

DISTRIBUTION = "mtl-hf-count-head"

COUNT_HEAD = '''
    """A count head: Poisson regression of a non-negative count per image."""

    from dataclasses import dataclass

    import torch
    import torch.nn.functional as F
    from torch import nn

    from mtl_hf.heads import BackboneFeatures, BackboneSpec, HeadOptions, HeadOutput, MetricSpec, TaskHead


    @dataclass
    class CountOptions(HeadOptions):
        """Options of ``count``.

        Attributes:
            pooling: ``"cls"`` or ``"mean"`` of the patch tokens (default ``"mean"``).
        """

        pooling: str = "mean"

        def __post_init__(self) -> None:
            if self.pooling not in ("cls", "mean"):
                raise ValueError(f"pooling must be 'cls' or 'mean', got {self.pooling!r}")


    class CountHead(TaskHead):
        """Counts per image (labels ``(B, 1)`` floats >= 0, NaN missing); logits: log-rates ``(B, 1)``."""

        Options = CountOptions
        options: CountOptions
        target_kind = "continuous"
        target_layout = "float32 (B, 1) counts >= 0; NaN where missing"
        hub_task = "image-regression"
        metric_statistic_names = ("n", "sum_abs_error", "sum_deviance")

        def __init__(self, task_name: str, options: CountOptions, backbone: BackboneSpec) -> None:
            super().__init__(task_name, options, backbone)
            self.rate = nn.Linear(backbone.hidden_size, 1)

        def check_labels(self, labels, batch_size):
            labels = labels.reshape(batch_size, -1)
            if labels.shape[1] != 1:
                raise self._label_error(f"expected one count per sample, got {labels.shape[1]}")
            if (labels[torch.isfinite(labels)] < 0).any():
                raise self._label_error("counts must be non-negative")
            return labels

        def forward(self, features: BackboneFeatures, labels=None) -> HeadOutput:
            pooled = features.cls_token if self.options.pooling == "cls" else features.patch_tokens.mean(1)
            log_rate = self.rate(pooled).float()
            loss = None if labels is None else F.poisson_nll_loss(log_rate, labels.float(), log_input=True)
            return HeadOutput(loss=loss, logits=log_rate)

        def predictions(self, logits):
            return logits.float().exp()  # the expected count

        def metric_specs(self):
            return (
                MetricSpec("mae", higher_is_better=False, selects=True, model_index="MAE"),
                MetricSpec("poisson_deviance", higher_is_better=False),
            )

        def metric_statistics(self, logits, labels):
            y = labels.double().reshape(-1)
            mu = logits.double().reshape(-1).exp()
            present = torch.isfinite(y)
            y = torch.where(present, y, 0.0)
            y_log = torch.where(y > 0, y * torch.log(y.clamp_min(1e-300) / mu), 0.0)
            deviance = 2.0 * (y_log - (y - mu))
            zero = torch.zeros_like(y)
            return torch.stack(
                [present.double(), torch.where(present, (y - mu).abs(), zero), torch.where(present, deviance, zero)],
                dim=-1,
            )

        def metrics_from_sums(self, sums):
            n, abs_error, deviance = sums.double().unbind(-1)
            safe = torch.where(n > 0, n, 1.0)
            nan = torch.full_like(n, float("nan"))
            return {
                "mae": torch.where(n > 0, abs_error / safe, nan),
                "poisson_deviance": torch.where(n > 0, deviance / safe, nan),
            }
'''


def write_images(root: Path, n: int = 48) -> list[dict[str, str]]:
    """``n`` 32-px grey PNGs with ``lesions`` bright squares each (the count; every 7th cell empty),
    a tumour flag, three slices per patient; the manifest's records."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        count = int(rng.integers(0, 4))
        image = rng.normal(50, 8, (32, 32))
        for k in range(count):
            image[4 + 7 * k : 9 + 7 * k, 4 : 9 + 5 * (i % 3)] = 220
        write_png(root / f"{i}.png", image.clip(0, 255).astype(np.uint8))
        lesions = "" if i % 7 == 3 else str(count)
        records.append(
            {
                "path": f"{i}.png",
                "patient_id": f"P{i // 3:02d}",
                "tumour": str(int(count > 1)),
                "lesions": lesions,
            }
        )
    write_csv(root / "manifest.csv", records)
    return records


def training_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "output_dir": str(tmp_path / "run"),
        "cache_dir": str(tmp_path / "cache"),
        "data": {
            "kind": "images", "root": str(tmp_path / "images"), "image_size": 32,
            "split": {"train": 0.5, "validation": 0.2, "test": 0.3},
            "images": {"manifest": "manifest.csv", "targets": {
                "tumour": {"kind": "binary", "columns": ["tumour"]},
                "lesions": {"kind": "continuous", "columns": ["lesions"]},
            }},
        },
        "model": {
            "backbone_config": tiny_backbone(image_size=32, patch_size=8, num_channels=1),
            "tasks": {"tumour": {"type": "binary_classification"}, "lesions": {"type": "count"},
                      "mim": {"type": "mim", "mask_patch_size": 16}},
        },
        "task_columns": {"tumour": "tumour", "lesions": "lesions"},
        "training": {"strategy": "mtl", "epochs": 1, "batch_size": 12, "monitor": "lesions",
                     "bootstrap_resamples": 100},
    }  # fmt: skip


def mtl_hf_command(site: Path, *argv: str) -> str:
    """``mtl-hf argv...`` in a fresh process that sees the installed plugin; it must succeed."""
    done = run_process(["-m", "mtl_hf.cli", *argv], sites=[site])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def test_a_count_head_from_an_installed_distribution_goes_through_train_predict_compare_and_the_card(
    tmp_path: Path,
) -> None:
    site = install_distribution(
        tmp_path / "dist", DISTRIBUTION, "0.2.0", {"mtl_hf.heads": {"count": "count_head:CountHead"}},
        {"count_head": COUNT_HEAD},
    )  # fmt: skip
    listed = [line.split() for line in mtl_hf_command(site, "plugins").splitlines()]
    assert ["head", "count", DISTRIBUTION, "0.2.0", "ok"] in listed
    records = write_images(tmp_path / "images")
    raw = training_config(tmp_path)
    config_path = tmp_path / "train.yaml"
    config_path.write_text(yaml.safe_dump(raw))

    # mtl-hf train: the count task next to a binary task and SimMIM
    mtl_hf_command(site, "train", str(config_path))
    run = tmp_path / "run"
    saved = json.loads((run / "best_model" / "config.json").read_text())
    assert saved["head_sources"]["count"] == f"{DISTRIBUTION} 0.2.0"

    # test_metrics.json: its metrics as rows with intervals, over the labelled test samples only
    lesions = json.loads((run / "test_metrics.json").read_text())["lesions"]
    rows = {r["metric"]: r for r in lesions["metrics"]}
    assert [(m, r["higher_is_better"], r["model_index"]) for m, r in rows.items()] == [
        ("mae", False, "MAE"), ("poisson_deviance", False, None),
    ]  # fmt: skip
    for name, r in rows.items():
        assert r["lower"] <= r["value"] <= r["upper"]
        assert (lesions[name], lesions[f"{name}_low"], lesions[f"{name}_high"]) == (
            r["value"],
            r["lower"],
            r["upper"],
        )

    # test_predictions.csv: a row per labelled test sample, from which the metrics are recomputed here
    with (run / "test_predictions.csv").open() as handle:
        written = [r for r in csv.DictReader(handle) if r["task"] == "lesions"]
    labels = {r["path"]: r["lesions"] for r in records}
    test_patients = {w["patient_id"] for w in written}
    assert all(
        labels[w["sample_id"]] != "" and float(w["label"]) == float(labels[w["sample_id"]]) for w in written
    )
    labelled_in_test = [p for p in labels if f"P{int(p[:-4]) // 3:02d}" in test_patients and labels[p] != ""]
    assert len(written) == lesions["n_samples"] == len(labelled_in_test) > 0
    assert any(
        labels[f"{3 * int(p[1:]) + k}.png"] == "" for p in test_patients for k in range(3)
    )  # some left out
    y = np.array([float(r["label"]) for r in written])
    mu = np.array([float(r["prediction"]) for r in written])
    assert lesions["mae"] == pytest.approx(np.mean(np.abs(y - mu)), rel=1e-4)
    deviance = [
        2 * ((yi * math.log(yi / m) if yi > 0 else 0.0) - (yi - m)) for yi, m in zip(y, mu, strict=True)
    ]
    assert lesions["poisson_deviance"] == pytest.approx(np.mean(deviance), rel=1e-4)

    # mtl-hf predict on test images: the expected count per image in the CSV and the JSON, the same
    # values the evaluation wrote (the inference path and the evaluation loop agree)
    chosen = [w["sample_id"] for w in written[:3]]
    inputs = [str(tmp_path / "images" / name) for name in chosen]
    mtl_hf_command(site, "predict", str(run), *inputs, "-o", str(tmp_path / "pred"), "--no-progress")
    with (tmp_path / "pred" / "predictions.csv").open() as handle:
        predicted = {Path(r["source"]).name: r for r in csv.DictReader(handle)}
    assert set(predicted) == set(chosen) and {"tumour", "lesions"} <= set(predicted[chosen[0]])
    evaluated = {w["sample_id"]: float(w["prediction"]) for w in written}
    for name, r in predicted.items():
        assert float(r["lesions"]) == pytest.approx(evaluated[name], rel=1e-4)
    as_json = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert as_json["tasks"]["lesions"]["columns"] == ["lesions"]
    assert as_json["tasks"]["lesions"]["key"] == "values"  # expected counts, not probabilities
    for image in as_json["images"]:
        assert image["values"]["lesions"] == pytest.approx(
            float(predicted[Path(image["source"]).name]["lesions"])
        )
        assert 0.0 <= image["probabilities"]["tumour"] <= 1.0

    # mtl-hf compare: stl and mtl, one seed; the count task's metrics in metrics.csv and results.md
    compare_path = tmp_path / "compare.yaml"
    compare_path.write_text(
        yaml.safe_dump(
            {
                "output_dir": str(tmp_path / "cmp"), "base": str(config_path),
                "grid": {"strategies": ["stl", "mtl"], "seeds": [0]},
                "bootstrap_resamples": 100, "attention": False,
            }
        )
    )  # fmt: skip
    mtl_hf_command(site, "compare", str(compare_path))
    with (tmp_path / "cmp" / "metrics.csv").open() as handle:
        table = [r for r in csv.DictReader(handle) if r["task"] == "lesions"]
    assert {(r["strategy"], r["metric"]) for r in table} == {
        (s, m) for s in ("stl", "mtl") for m in ("mae", "poisson_deviance")
    }
    assert all(float(r["lower"]) <= float(r["value"]) <= float(r["upper"]) for r in table)
    assert "| lesions | mae ↓ |" in (tmp_path / "cmp" / "results.md").read_text()
    with (tmp_path / "cmp" / "paired_differences.csv").open() as handle:
        differences = {r["metric"] for r in csv.DictReader(handle) if r["task"] == "lesions"}
    assert differences == {"mae", "poisson_deviance"}

    # mtl-hf push to a loopback Hub: the card names the task, its MAE in the model-index, the plugin
    with HubServer(token=TOKEN) as hub:
        mtl_hf_command(site, "push", str(run), "lab/counts", "--token", TOKEN, "--endpoint", hub.url)
        card = hub.file("lab/counts", "README.md", "main").decode()
    assert not hub.unhandled, hub.unhandled
    assert f'| `lesions` | `count` | pooling="mean" | {DISTRIBUTION} 0.2.0 |' in card  # the heads table
    assert f"pip install mtl-hf {DISTRIBUTION}" in card
    index = yaml.safe_load(card.split("---")[1])["model-index"][0]["results"]
    (result,) = [r for r in index if r["task"]["name"] == "lesions (count)"]
    assert result["task"]["type"] == "image-regression"
    (metric,) = result["metrics"]
    assert metric["type"] == "mae" and metric["name"].startswith("MAE (lesions), 95% CI")
    assert metric["value"] == pytest.approx(lesions["mae"], abs=1e-4)  # shown to 4 decimals
    assert f"| `lesions` | MAE | {lesions['mae']:.3f} |" in card  # the results table
