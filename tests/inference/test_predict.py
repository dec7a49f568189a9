"""predict: real image files and NIfTI volumes in, probabilities equal to the model's own logits passed
through sigmoid/softmax, a regression's values de-standardised by hand from its linear layer's output,
CSV and JSON out, volume aggregation by hand (each head's rule)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel

from mtl_hf.inference import InputError, predict
from tests.inference.conftest import save_model


def direct_probabilities(folder: Path, images: list[np.ndarray]) -> dict[str, np.ndarray]:
    """What predict must give: the saved model's logits on the processed images, through the link functions."""
    model = AutoModel.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        logits = model(processor(images, return_tensors="pt")["pixel_values"]).logits
    return {
        "tumour": torch.sigmoid(logits["tumour"]).numpy()[:, None],
        "grade": torch.softmax(logits["grade"], dim=1).numpy(),
        "findings": torch.sigmoid(logits["findings"]).numpy(),
    }


@pytest.fixture(scope="module")
def png_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(0)
    paths = []
    shapes = [(64, 64), (48, 80), (64, 64, 3), (100, 70), (30, 30, 3)]
    for i, shape in enumerate(shapes):
        path = folder / f"img_{i}.png"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_png_probabilities_equal_the_model_logits_through_sigmoid_and_softmax(
    three_task_model: Path, png_files: list[Path], tmp_path: Path
) -> None:
    result = predict(three_task_model, png_files, output_dir=tmp_path, batch_size=2, progress=False)
    expected = direct_probabilities(three_task_model, [np.array(Image.open(p)) for p in png_files])
    assert [p.source for p in result.images] == [str(p) for p in png_files]
    assert all(p.index is None for p in result.images) and result.volumes == []
    for task, want in expected.items():
        got = np.stack([p.predictions[task] for p in result.images])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert len({round(float(p.predictions["tumour"][0]), 6) for p in result.images}) > 1

    rows = list(csv.DictReader((tmp_path / "predictions.csv").read_text().splitlines()))
    assert list(rows[0])[:2] == ["source", "index"]
    assert sorted(list(rows[0])[2:]) == sorted(
        ["tumour", "grade/low", "grade/mid", "grade/high", "findings/oedema", "findings/necrosis"]
    )
    assert rows[1]["index"] == ""
    assert float(rows[1]["grade/mid"]) == pytest.approx(expected["grade"][1, 1], rel=1e-5)
    doc = json.loads((tmp_path / "predictions.json").read_text())
    assert doc["tasks"]["grade"]["outputs"] == ["low", "mid", "high"]
    assert {t: (v["key"], v["volume_aggregation"]) for t, v in doc["tasks"].items()} == {
        t: ("probabilities", {"method": "topk_mean", "top_k": 3}) for t in expected
    }
    assert [set(image) for image in doc["images"]] == [{"source", "index", "probabilities"}] * len(png_files)
    first = doc["images"][0]["probabilities"]
    assert first["tumour"] == pytest.approx(expected["tumour"][0, 0], rel=1e-5)
    assert first["findings"]["necrosis"] == pytest.approx(expected["findings"][0, 1], rel=1e-5)
    assert not (tmp_path / "volume_predictions.csv").exists()


def test_batch_size_does_not_change_results(three_task_model: Path, png_files: list[Path]) -> None:
    a = predict(three_task_model, png_files, batch_size=1, progress=False)
    b = predict(three_task_model, png_files, batch_size=5, progress=False)
    for x, y in zip(a.images, b.images, strict=True):
        for task in x.predictions:
            np.testing.assert_allclose(x.predictions[task], y.predictions[task], rtol=1e-5, atol=1e-6)


def test_nifti_volume_gives_slice_and_volume_scores(three_task_model: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 1000, (64, 64, 6)).astype(np.int16)
    data[:, :, 5] = 0  # background slice: skipped
    vol = tmp_path / "case.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), vol)
    result = predict(
        three_task_model, [vol], output_dir=tmp_path / "out", intensity="volume", top_k=3, progress=False
    )
    assert [p.index for p in result.images] == [0, 1, 2, 3, 4]
    slices = [np.rot90(data[:, :, k].astype(np.float32)) / data.max() for k in range(5)]
    expected = direct_probabilities(three_task_model, slices)
    for task, want in expected.items():
        got = np.stack([p.predictions[task] for p in result.images])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        top3 = np.sort(want, axis=0)[-3:].mean(axis=0)  # per output column
        np.testing.assert_allclose(result.volumes[0].predictions[task], top3, rtol=1e-5, atol=1e-6)
    (volume,) = result.volumes
    assert volume.source == str(vol) and volume.num_slices == 5
    assert volume.peak_slice["tumour"] == int(np.argmax(expected["tumour"][:, 0]))
    rows = list(csv.DictReader((tmp_path / "out" / "volume_predictions.csv").read_text().splitlines()))
    assert rows[0]["num_slices"] == "5"
    assert float(rows[0]["tumour"]) == pytest.approx(np.sort(expected["tumour"][:, 0])[-3:].mean(), rel=1e-5)
    doc = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert doc["aggregation"] == {"method": "topk_mean", "top_k": 3}

    by_max = predict(three_task_model, [vol], aggregation="max", intensity="volume", progress=False)
    np.testing.assert_allclose(
        by_max.volumes[0].predictions["grade"], expected["grade"].max(axis=0), rtol=1e-5
    )


def test_folders_and_run_folders(tmp_path: Path, png_files: list[Path]) -> None:
    run = tmp_path / "run"
    save_model(run / "best_model", {"tumour": {"type": "binary_classification"}})
    result = predict(run, [png_files[0].parent], progress=False)  # a run folder and an image folder
    assert len(result.images) == len(png_files) and list(result.columns) == ["tumour"]
    only = predict(run, png_files[:1], tasks=["tumour"], progress=False)
    assert only.images[0].predictions["tumour"] == pytest.approx(result.images[0].predictions["tumour"])


def test_errors(three_task_model: Path, png_files: list[Path]) -> None:
    with pytest.raises(ValueError, match="'mim' \\(mim\\) gives no per-sample predictions"):
        predict(three_task_model, png_files, tasks=["mim"], progress=False)
    with pytest.raises(ValueError, match="aggregation must be one of"):
        predict(three_task_model, png_files, aggregation="median", progress=False)  # type: ignore[arg-type]
    result = predict(three_task_model, ["nope.png"], progress=False)
    assert result.errors == [InputError("nope.png", "no such file or folder")] and result.images == []


REGRESSION_TASKS = {
    "tumour": {"type": "binary_classification"},
    "area": {"type": "regression", "num_outputs": 2, "output_names": ["whole", "core"], "target_mean": [5.0, 1.0], "target_std": [2.0, 0.5]},
}  # fmt: skip


def by_hand(folder: Path, images: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The binary probability (sigmoid of its logit) and the regression's values, de-standardised here
    from the output of its linear layer (captured by a hook): ``z * std + mean`` with the config's
    ``target_mean`` / ``target_std``."""
    model = AutoModel.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    captured: list[torch.Tensor] = []
    hook = model.head("area").classifier.register_forward_hook(lambda _m, _i, out: captured.append(out))
    with torch.no_grad():
        logits = model(processor(images, return_tensors="pt")["pixel_values"]).logits
    hook.remove()
    (standardised,) = captured
    options = model.config.tasks["area"]
    mean, std = np.array(options["target_mean"]), np.array(options["target_std"])
    return {
        "tumour": torch.sigmoid(logits["tumour"]).numpy()[:, None],
        "area": standardised.numpy().astype(np.float64) * std + mean,
    }


def test_a_regression_task_is_predicted_as_values_in_its_units(png_files: list[Path], tmp_path: Path) -> None:
    folder = save_model(tmp_path / "model", REGRESSION_TASKS)
    result = predict(folder, png_files, output_dir=tmp_path / "out", progress=False)
    expected = by_hand(folder, [np.array(Image.open(p)) for p in png_files])
    for task, want in expected.items():
        np.testing.assert_allclose(
            np.stack([p.predictions[task] for p in result.images]), want, rtol=1e-5, atol=1e-5
        )
    assert np.ptp(expected["area"][:, 0]) > 0.1  # the images give different values
    rows = list(csv.DictReader((tmp_path / "out" / "predictions.csv").read_text().splitlines()))
    assert list(rows[0]) == ["source", "index", "tumour", "area/whole", "area/core"]
    assert float(rows[2]["area/core"]) == pytest.approx(expected["area"][2, 1], rel=1e-5)
    doc = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert doc["tasks"]["area"] == {
        "key": "values",
        "outputs": ["whole", "core"],
        "columns": ["area/whole", "area/core"],
        "volume_aggregation": {"method": "mean"},
    }
    image = doc["images"][3]
    assert set(image) == {"source", "index", "probabilities", "values"}
    assert list(image["probabilities"]) == ["tumour"] and list(image["values"]) == ["area"]
    assert image["values"]["area"]["whole"] == pytest.approx(expected["area"][3, 0], rel=1e-5)
    assert image["probabilities"]["tumour"] == pytest.approx(expected["tumour"][3, 0], rel=1e-5)


@pytest.mark.parametrize("rule", ["mean", "sum"])
def test_a_volume_value_follows_the_regression_heads_rule_and_a_probability_the_asked_one(
    tmp_path: Path, rule: str
) -> None:
    tasks = {**REGRESSION_TASKS, "area": {**REGRESSION_TASKS["area"], "volume_aggregation": rule}}
    folder = save_model(tmp_path / "model", tasks)
    rng = np.random.default_rng(5)
    data = rng.integers(0, 1000, (64, 64, 7)).astype(np.int16)
    data[:, :, 0] = 0  # background slice: skipped
    vol = tmp_path / "case.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), vol)
    result = predict(folder, [vol], output_dir=tmp_path / "out", intensity="volume", top_k=2, progress=False)
    assert [p.index for p in result.images] == [1, 2, 3, 4, 5, 6]
    slices = [np.rot90(data[:, :, k].astype(np.float32)) / data.max() for k in range(1, 7)]
    expected = by_hand(folder, slices)
    np.testing.assert_allclose(
        np.stack([p.predictions["area"] for p in result.images]), expected["area"], rtol=1e-5, atol=1e-5
    )
    (volume,) = result.volumes
    area = expected["area"].sum(axis=0) if rule == "sum" else expected["area"].mean(axis=0)
    np.testing.assert_allclose(volume.predictions["area"], area, rtol=1e-5, atol=1e-5)
    tumour = np.sort(expected["tumour"][:, 0])[-2:].mean()  # the classifier keeps the rule asked for
    assert volume.predictions["tumour"][0] == pytest.approx(tumour, rel=1e-5)
    rows = list(csv.DictReader((tmp_path / "out" / "volume_predictions.csv").read_text().splitlines()))
    assert float(rows[0]["area/core"]) == pytest.approx(area[1], rel=1e-5)
    assert float(rows[0]["tumour"]) == pytest.approx(tumour, rel=1e-5)
    doc = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert doc["tasks"]["area"]["volume_aggregation"] == {"method": rule}
    assert doc["tasks"]["tumour"]["volume_aggregation"] == {"method": "topk_mean", "top_k": 2}
    (entry,) = doc["volumes"]
    assert entry["values"]["area"]["whole"] == pytest.approx(area[0], rel=1e-5)
    assert entry["probabilities"]["tumour"] == pytest.approx(tumour, rel=1e-5)
    peak = 1 + int(np.argmax(expected["area"][:, 0]))  # the slice with the largest first output
    assert entry["peak_slice"] == {"tumour": 1 + int(np.argmax(expected["tumour"][:, 0])), "area": peak}
