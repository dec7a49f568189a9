"""ONNX export: onnxruntime's outputs against PyTorch's on a tiny model, at batch sizes other than the
traced one; the folder's description and processor; refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel

from mtl_hf import MTLImageProcessor
from mtl_hf.cli import main as cli_main
from mtl_hf.export import ExportError, OnnxModel, export_onnx
from mtl_hf.inference.probabilities import task_predictions
from tests.inference.conftest import THREE_TASKS, save_model

pytest.importorskip("onnxruntime")

CLASSIFIERS = ["tumour", "grade", "findings"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    model_dir = save_model(tmp_path_factory.mktemp("model"), THREE_TASKS)
    out = tmp_path_factory.mktemp("export") / "onnx"
    assert cli_main(["export", str(model_dir), "-o", str(out), "--attentions"]) == 0
    return model_dir, out


@pytest.mark.parametrize("batch_size", [1, 5])
def test_onnxruntime_matches_pytorch(exported: tuple[Path, Path], batch_size: int) -> None:
    model_dir, out = exported
    model = AutoModel.from_pretrained(model_dir).eval()
    onnx_model = OnnxModel(out, threads=1)
    pixel_values = torch.randn(batch_size, 3, 64, 64, generator=torch.Generator().manual_seed(batch_size))
    with torch.no_grad():
        reference = model(pixel_values, tasks=CLASSIFIERS, output_attentions=True)
    got = onnx_model(pixel_values.numpy())
    assert list(got) == [f"logits.{t}" for t in CLASSIFIERS] + [f"predictions.{t}" for t in CLASSIFIERS] + [
        "attentions"
    ]
    for task in CLASSIFIERS:
        expected = reference.logits[task].numpy()
        assert got[f"logits.{task}"].shape == expected.shape
        assert np.abs(got[f"logits.{task}"] - expected).max() <= 1e-4
    stacked = torch.stack(reference.attentions, dim=1).numpy()
    assert got["attentions"].shape == (batch_size, 2, 2, 17, 17)
    assert np.abs(got["attentions"] - stacked).max() <= 1e-4
    # The graph's predictions equal predict's (sigmoid / softmax of the heads), and so do the
    # probabilities a consumer of the logits gets through the description's functions (format 1).
    expected_p = task_predictions(model, reference.logits, CLASSIFIERS)
    assert set(onnx_model.probabilities(got)) == set(CLASSIFIERS) == set(onnx_model.predictions(got))
    logits_only = {k: v for k, v in got.items() if not k.startswith("predictions.")}
    for task in CLASSIFIERS:
        np.testing.assert_allclose(onnx_model.predictions(got)[task], expected_p[task].numpy(), atol=1e-5)
        np.testing.assert_allclose(
            onnx_model.predictions(logits_only)[task], expected_p[task].numpy(), atol=1e-5
        )


def test_export_folder_describes_outputs(exported: tuple[Path, Path]) -> None:
    model_dir, out = exported
    description = json.loads((out / "onnx_outputs.json").read_text())
    assert description["input"] == {"name": "pixel_values", "shape": ["batch", 3, 64, 64], "dtype": "float32"}
    by_task = {o["task"]: o for o in description["outputs"]}
    assert list(by_task) == CLASSIFIERS
    assert by_task["tumour"]["shape"] == ["batch"] and by_task["tumour"]["probabilities"] == "sigmoid"
    assert by_task["tumour"]["predictions"] == "predictions.tumour"
    assert {o["prediction_key"] for o in description["outputs"]} == {"probabilities"}
    assert by_task["grade"]["output_names"] == ["low", "mid", "high"]
    assert by_task["grade"]["probabilities"] == "softmax"
    assert by_task["findings"]["output_names"] == ["oedema", "necrosis"]
    assert description["attentions"]["shape"] == ["batch", 2, 2, 17, 17]
    assert description["attentions"]["grid_size"] == [4, 4]
    saved = MTLImageProcessor.from_pretrained(out).to_dict()
    original = MTLImageProcessor.from_pretrained(model_dir).to_dict()
    assert saved == original
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_export_refusals(exported: tuple[Path, Path], tmp_path: Path) -> None:
    model_dir, _ = exported
    with pytest.raises(ExportError, match="'mim' reads the masked view"):
        export_onnx(model_dir, tmp_path / "a", tasks=["mim"])
    with pytest.raises(ExportError, match="no task named 'size'"):
        export_onnx(model_dir, tmp_path / "b", tasks=["size"])
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="holds other files"):
        export_onnx(model_dir, busy)
    assert (busy / "notes.txt").read_text() == "keep me"
    with pytest.raises(ExportError, match="opset 3: torch's ONNX exporter writes opsets 7 to"):
        export_onnx(model_dir, tmp_path / "c", opset=3)
    # opset 9 has no attention operator: refused while tracing, naming the opset and the operator
    with pytest.raises(
        ExportError, match="opset 9: Exporting the operator 'aten::scaled_dot_product_attention'"
    ):
        export_onnx(model_dir, tmp_path / "d", opset=9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]  # nothing else written, no temporary folder


def test_segmentation_task_exports(tmp_path: Path) -> None:
    pytest.importorskip("mtl_hf_segmentation")
    tasks = {"tumour": {"type": "binary_classification"}, "lesion": {"type": "segmentation"}}
    model_dir = save_model(tmp_path / "model", tasks)
    result = export_onnx(model_dir, tmp_path / "onnx")
    assert [o["task"] for o in result.outputs["outputs"]] == ["tumour", "lesion"]
    assert result.outputs["outputs"][1]["segmentation"] is True
    assert result.outputs["attentions"] is None
    model = AutoModel.from_pretrained(model_dir).eval()
    pixel_values = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        reference = model(pixel_values, tasks=["tumour", "lesion"]).logits
    got = OnnxModel(tmp_path / "onnx", threads=1)(pixel_values)
    assert got["logits.lesion"].shape == (3, 64, 64)
    for task in ("tumour", "lesion"):
        assert np.abs(got[f"logits.{task}"] - reference[task].numpy()).max() <= 1e-4


def test_a_regression_task_exports_its_values(tmp_path: Path) -> None:
    tasks = {"area": {"type": "regression", "num_outputs": 2, "output_names": ["whole", "core"], "target_mean": [5.0, 1.0], "target_std": [2.0, 0.5]}}  # fmt: skip
    model_dir = save_model(tmp_path / "model", tasks)
    out = export_onnx(model_dir, tmp_path / "onnx").folder
    entry = json.loads((out / "onnx_outputs.json").read_text())["outputs"][0]
    assert (entry["task"], entry["shape"], entry["output_names"]) == ("area", ["batch", 2], ["whole", "core"])
    assert entry["probabilities"] is None and entry["prediction_kind"] is None  # the logits are the values
    assert (entry["predictions"], entry["prediction_key"]) == ("predictions.area", "values")
    model = AutoModel.from_pretrained(model_dir).eval()
    pixel_values = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = task_predictions(model, model(pixel_values, tasks=["area"]).logits, ["area"])["area"]
    onnx_model = OnnxModel(out, threads=1)
    got = onnx_model(pixel_values.numpy())
    np.testing.assert_allclose(got["logits.area"], expected.numpy(), atol=1e-4)
    np.testing.assert_allclose(onnx_model.predictions(got)["area"], expected.numpy(), atol=1e-4)
    assert onnx_model.probabilities(got) == {} and onnx_model.prediction_keys() == {"area": "values"}
