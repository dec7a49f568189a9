"""Model cards: metadata that huggingface_hub parses back unchanged, and a body that tells the truth."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData, metadata_load
from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

from mtl_hf import MTLImageProcessor, MTLModel
from mtl_hf.hub import ModelCardOptions, render_model_card

from .conftest import write_model_dir, write_run
from .hub_server import validate_card_metadata

OPTIONS = ModelCardOptions(datasets=["lab/brats-slices"], dataset_name="BraTS slices", tags=["brain-mri"])


def test_metadata_round_trips_through_huggingface_hub(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", name_or_path="facebook/dino-vits16")
    card = render_model_card(run, "lab/brats-mtl", OPTIONS)
    card.save(tmp_path / "README.md")

    metadata = metadata_load(tmp_path / "README.md")
    assert metadata is not None
    assert metadata["library_name"] == "mtl-hf"
    assert metadata["license"] == "apache-2.0"
    assert metadata["base_model"] == "facebook/dino-vits16"
    assert metadata["datasets"] == ["lab/brats-slices"]
    assert metadata["pipeline_tag"] == "image-classification"
    assert {"medical-imaging", "multi-task-learning", "masked-image-modeling", "brain-mri"} <= set(
        metadata["tags"]
    )

    expected = EvalResult(
        task_type="image-classification",
        task_name="tumour (binary_classification)",
        dataset_type="lab/brats-slices",
        dataset_name="BraTS slices",
        dataset_split="test",
        metric_type="roc_auc",
        metric_value=0.8125,
        metric_name="ROC AUC (tumour), CI 0.703–0.906",
    )
    name, results = model_index_to_eval_results(metadata["model-index"])
    assert name == "brats-mtl" and results == [expected]
    assert eval_results_to_model_index(name, results) == metadata["model-index"]
    parsed = ModelCardData(**metadata)
    assert parsed.eval_results == [expected] and parsed.to_dict() == ModelCard(str(card)).data.to_dict()
    assert validate_card_metadata(str(card)) == []


def test_the_interval_names_its_confidence_level_when_the_run_recorded_it(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    metrics = json.loads((run / "test_metrics.json").read_text())
    metrics["tumour"]["confidence_level"] = 0.95
    (run / "test_metrics.json").write_text(json.dumps(metrics))
    card = render_model_card(run, "lab/x")
    assert card.data.eval_results[0].metric_name == "ROC AUC (tumour), 95% CI 0.703–0.906"
    assert card.data.eval_results[0].dataset_type == "custom"
    assert "| `tumour` | ROC AUC | 0.812 | 95% CI 0.703–0.906 | accuracy 0.750 |" in card.text


def test_a_segmentation_task_is_reported_by_its_dice(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", name_or_path="facebook/dino-vits16")
    metrics = json.loads((run / "test_metrics.json").read_text())
    metrics["lesion"] = {
        "kind": "segmentation", "n_samples": 40, "n_groups": 2, "dice": 0.61234, "dice_global": 0.7,
        "dice_low": 0.5, "dice_high": 0.72, "dice_global_low": 0.6, "dice_global_high": 0.8,
        "confidence_level": 0.95,
    }  # fmt: skip
    (run / "test_metrics.json").write_text(json.dumps(metrics))
    card = render_model_card(run, "lab/brats-mtl", OPTIONS)
    dice = card.data.eval_results[1]
    assert (dice.task_type, dice.metric_type, dice.metric_value) == ("image-segmentation", "dice", 0.6123)
    assert dice.metric_name == "Dice (lesion), 95% CI 0.500–0.720"
    assert card.data.metrics == ["roc_auc", "dice"]
    assert (
        "| `lesion` | Dice | 0.612 | 95% CI 0.500–0.720 | n_samples 40, n_groups 2, dice_global 0.700, "
        "dice_global_low 0.600, dice_global_high 0.800 |"
    ) in card.text
    assert validate_card_metadata(str(card)) == []


def test_the_body_describes_model_training_results_use_and_limits(tmp_path: Path) -> None:
    card = render_model_card(write_run(tmp_path / "run"), "lab/brats-mtl", OPTIONS)
    text = card.text
    assert '| `tumour` | `binary_classification` | dropout=0.0, pooling="cls" | mtl-hf (built in) |' in text
    assert '| `mim` | `mim` | loss="mse", mask_patch_size=16, mask_ratio=0.6, norm_target=false |' in text
    assert "**Loss weighting:** `fixed`" in text
    assert "hidden size 32, 2 layers, 2 attention heads, patch size 8, 32 px input" in text
    assert "Trained for 4 optimizer steps (last logged epoch: 1); final training loss 0.875." in text
    assert "Best validation ROC AUC (`tumour`) 0.830." in text
    assert "| `tumour` | ROC AUC | 0.812 | CI 0.703–0.906 | accuracy 0.750 |" in text
    assert (
        "![plots/roc_tumour.png](plots/roc_tumour.png)" in text
        and "![plots/loss.png](plots/loss.png)" in text
    )
    assert "| seed | 13 |" in text and "| versions.torch | 2.13.0 |" in text
    assert "```yaml\nmodel:\n  tasks: [tumour, mim]" in text
    assert "pip install mtl-hf\n" in text
    assert 'AutoModel.from_pretrained("lab/brats-mtl")' in text
    assert 'AutoImageProcessor.from_pretrained("lab/brats-mtl")' in text
    assert "import mtl_hf" in text
    assert text.count("not a medical device") == 2
    assert "BraTS-0001" not in text  # patient ids stay out of the card


def test_a_local_backbone_checkpoint_is_not_a_base_model_and_its_path_stays_private(tmp_path: Path) -> None:
    local = tmp_path / "private" / "dino-vits16"
    local.mkdir(parents=True)
    card = render_model_card(write_model_dir(tmp_path / "model", name_or_path=str(local)), "lab/x")
    assert card.data.base_model is None
    assert "Initialised from a local pretrained checkpoint." in card.text
    assert "private" not in str(card)


def test_a_model_folder_card_has_no_results_and_no_model_index(model_dir: Path) -> None:
    card = render_model_card(model_dir, "lab/x")
    assert "model-index" not in card.data.to_dict() and "model_name" not in card.data.to_dict()
    assert "No test results were shared with this model." in card.text
    assert "intervals above" not in card.text
    assert "The config records no pretrained backbone checkpoint." in card.text


def test_a_plugin_head_names_the_package_to_install(model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    config["head_sources"] = {"segmentation": "mtl-hf-segmentation 0.1.0"}
    config["tasks"]["lesion"] = {"type": "segmentation"}
    (model_dir / "config.json").write_text(json.dumps(config))
    text = render_model_card(model_dir, "lab/x").text
    assert "pip install mtl-hf mtl-hf-segmentation\n" in text
    assert "`segmentation`: mtl-hf-segmentation 0.1.0" in text
    # the plugin is installed here, so the row shows its options with their defaults
    assert re.search(r"\| `lesion` \| `segmentation` \| [^|\n]+ \| mtl-hf-segmentation 0\.1\.0 \|", text)


def test_the_install_line_names_the_distributions_of_the_heads_and_the_weighter(model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    config["head_sources"] = {"segmentation": "mtl-hf-segmentation 0.1.0", "count": "mtl-hf-counts 2.0"}
    config["tasks"] |= {"lesion": {"type": "segmentation"}, "cells": {"type": "count"}}
    config["weighting"] = {"type": "learned_weights"}
    config["weighter_source"] = "mtl-hf-learned-weights 0.3"
    (model_dir / "config.json").write_text(json.dumps(config))
    text = render_model_card(model_dir, "lab/x").text
    assert "pip install mtl-hf mtl-hf-counts mtl-hf-learned-weights mtl-hf-segmentation\n" in text
    assert (
        "It was trained with the `learned_weights` weighter from mtl-hf-learned-weights 0.3; that distribution "
        "is needed to train on with this configuration." in text
    )
    # a weighter from a plugin alone: no sentence about plugin heads
    config["tasks"] = {k: v for k, v in config["tasks"].items() if k not in ("lesion", "cells")}
    del config["head_sources"]
    (model_dir / "config.json").write_text(json.dumps(config))
    text = render_model_card(model_dir, "lab/x").text
    assert "pip install mtl-hf mtl-hf-learned-weights\n" in text and "heads from plugin" not in text


def test_the_usage_snippet_runs_and_gives_the_models_output(model_dir: Path) -> None:
    text = render_model_card(model_dir, "lab/tiny").text
    (snippet,) = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        exec(snippet.replace('"lab/tiny"', repr(str(model_dir))), namespace)
    assert printed.getvalue().startswith("tumour tensor(")
    processor = MTLImageProcessor.from_pretrained(model_dir)
    model = MTLModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        expected = model(**processor(np.zeros((240, 240), dtype=np.uint8), return_tensors="pt")).logits[
            "tumour"
        ]
    torch.testing.assert_close(namespace["outputs"].logits["tumour"], expected)


def test_a_custom_template_gets_the_same_variables(model_dir: Path, tmp_path: Path) -> None:
    template = tmp_path / "card.md"
    template.write_text(
        "---\n{{ card_data }}\n---\n# {{ model_name }}: {% for t in tasks %}{{ t.name }} {% endfor %}\n"
    )
    card = render_model_card(model_dir, "lab/custom", template_path=template)
    assert card.text.strip() == "# custom: mim tumour"
    assert card.data.library_name == "mtl-hf"


def test_the_test_hub_rejects_malformed_metadata() -> None:
    broken = "---\nlicense: Apache 2\nmodel-index:\n- name: x\n  results:\n  - task: {type: t}\n    dataset: {type: d, name: n}\n    metrics: [{type: roc_auc}]\n---\n"
    assert validate_card_metadata(broken) == [
        "\"license\" is not a license identifier: 'Apache 2'",
        '"model-index[0].results[0].metrics[0]" needs "type" and "value"',
    ]


EXAMPLE_CARD = Path(__file__).resolve().parents[2] / "model_cards" / "example" / "README.md"


def test_the_template_in_model_cards_is_the_one_the_package_ships() -> None:
    from importlib import resources

    linked = EXAMPLE_CARD.parents[1] / "model_card.md"
    shipped = resources.files("mtl_hf.hub").joinpath("templates").joinpath("model_card.md")
    assert linked.read_text(encoding="utf-8") == shipped.read_text(encoding="utf-8")


def test_the_example_card_in_the_repository_is_current(tmp_path: Path) -> None:
    """``model_cards/example/README.md`` is what the template renders today (set
    ``MTL_HF_WRITE_EXAMPLE_CARD=1`` to rewrite it after changing the template)."""
    run = write_run(tmp_path / "run", name_or_path="facebook/dino-vits16")
    options = ModelCardOptions(
        datasets=["my-lab/brats-slices"],
        dataset_name="BraTS 2021 slices",
        tags=["brain-mri"],
        description="Detects brain tumours on axial MRI slices; trained jointly with masked-image reconstruction.",
    )
    rendered = str(render_model_card(run, "my-lab/dino-vits16-brats-mtl", options))
    rendered = re.sub(r"Card written by mtl-hf \S+\.", "Card written by mtl-hf.", rendered)
    if os.environ.get("MTL_HF_WRITE_EXAMPLE_CARD"):
        EXAMPLE_CARD.write_text(rendered, encoding="utf-8")
    assert EXAMPLE_CARD.read_text(encoding="utf-8") == rendered


def test_a_regression_task_sends_the_metrics_its_head_marks_to_the_model_index(tmp_path: Path) -> None:
    from mtl_hf.evaluation.task_metrics import MetricResult

    run = write_run(tmp_path / "run", name_or_path="facebook/dino-vits16")
    config = json.loads((run / "best_model" / "config.json").read_text())
    config["tasks"]["area"] = {"type": "regression"}
    (run / "best_model" / "config.json").write_text(json.dumps(config))
    rows = [  # as the evaluation loop writes them (tests/heads/test_regression.py checks that it does)
        MetricResult("area", "r2", 0.5, 0.3, 0.7, True, "R²", 40, 4),
        MetricResult("area", "mae", 0.05, 0.04, 0.06, False, None, 40, 4),
        MetricResult("area", "rmse", 0.07, 0.05, 0.09, False, "RMSE", 40, 4),
    ]
    metrics = json.loads((run / "test_metrics.json").read_text())
    metrics["area"] = {
        "kind": "regression",
        "r2": 0.5,
        "metrics": [{k: v for k, v in r.to_dict().items() if k != "task"} for r in rows],
    }
    (run / "test_metrics.json").write_text(json.dumps(metrics))
    card = render_model_card(run, "lab/brats-mtl", OPTIONS)
    area = [r for r in card.data.eval_results if r.task_name == "area (regression)"]
    assert [(r.task_type, r.metric_type, r.metric_value, r.metric_name) for r in area] == [
        ("image-regression", "r2", 0.5, "R² (area), 95% CI 0.300–0.700"),
        ("image-regression", "rmse", 0.07, "RMSE (area), 95% CI 0.050–0.090"),
    ]
    assert "| `area` | R² | 0.500 | 95% CI 0.300–0.700 |" in card.text
    assert validate_card_metadata(str(card)) == []


def test_the_card_says_which_validation_metric_selected_the_weights(tmp_path: Path) -> None:
    """A run selected on a lower-is-better metric of a non-classification task says so, from the
    ``selection.json`` training wrote beside the best model (not from a ROC AUC it may not have)."""
    run = write_run(tmp_path / "run")
    selection = {"monitor": "area", "metric": "rmse", "higher_is_better": False, "value": 0.0412, "step": 4}
    (run / "best_model" / "selection.json").write_text(json.dumps(selection))
    text = render_model_card(run, "lab/brats-mtl", OPTIONS).text
    assert (
        "The shared weights are those of the validation at step 4, where `area`'s rmse was lowest (0.041)."
        in text
    )
    assert "Best validation ROC AUC (`tumour`) 0.830." in text  # no `rmse/area` logged in this run
    assert "best validation epoch" not in text  # the selection sentence replaces the generic one

    (run / "best_model" / "selection.json").write_text("{not json")
    with pytest.raises(ValueError, match="selection.json"):
        render_model_card(run, "lab/brats-mtl", OPTIONS)


def test_the_best_validation_values_are_each_tasks_selection_metric(tmp_path: Path) -> None:
    """Training records every task's selection metric in ``selection.json``: the card gives each task's
    best validation value of it (the lowest for an error), named as the head names it."""
    run = write_run(tmp_path / "run")
    records = [
        {"step": 2, "epoch": 0, "split": "val", "roc_auc/tumour": 0.71, "r2/area": 0.40, "mae/area": 0.2, "mae/count": 1.5},
        {"step": 4, "epoch": 1, "split": "val", "roc_auc/tumour": 0.83, "r2/area": 0.512, "mae/area": 0.1, "mae/count": 1.25},
        {"step": 6, "epoch": 2, "split": "val", "roc_auc/tumour": 0.80, "r2/area": 0.45, "mae/area": 0.3, "mae/count": 1.75},
    ]  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    selection = {
        "monitor": "area", "metric": "r2", "higher_is_better": True, "value": 0.512, "step": 4,
        "tasks": {
            "tumour": {"metric": "roc_auc", "higher_is_better": True, "display": "ROC AUC"},
            "area": {"metric": "r2", "higher_is_better": True, "display": "R²"},
            "count": {"metric": "mae", "higher_is_better": False, "display": "mae"},
        },
    }  # fmt: skip
    (run / "best_model" / "selection.json").write_text(json.dumps(selection))
    text = render_model_card(run, "lab/brats-mtl", OPTIONS).text
    assert (
        "Best validation ROC AUC (`tumour`) 0.830, R² (`area`) 0.512, mae (`count`, lower is better) 1.250."
        in text
    )
    assert "where `area`'s r2 was highest (0.512)" in text
