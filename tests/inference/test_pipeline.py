"""The transformers pipeline one-liner on a saved tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, pipeline

import mtl_hf.inference  # noqa: F401  (registers the pipeline task)
from mtl_hf.inference import PIPELINE_TASK, MTLImageClassificationPipeline, PredictionError
from tests.inference.conftest import save_model


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(5)
    paths = []
    for i in range(3):
        paths.append(folder / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(paths[-1])
    return paths


def logits_of(folder: Path, path: Path) -> dict[str, torch.Tensor]:
    model = AutoModel.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        return model(processor(np.array(Image.open(path)), return_tensors="pt")["pixel_values"]).logits


def test_one_liner_single_binary_task(tmp_path: Path, images: list[Path]) -> None:
    folder = save_model(tmp_path / "m", {"tumour": {"type": "binary_classification"}, "mim": {"type": "mim"}})
    classify = pipeline(PIPELINE_TASK, model=str(folder))
    assert isinstance(classify, MTLImageClassificationPipeline)
    out = classify(str(images[0]))
    expected = torch.sigmoid(logits_of(folder, images[0])["tumour"])[0].item()
    assert out == [{"label": "tumour", "score": pytest.approx(expected, rel=1e-5)}]
    batch = classify([str(p) for p in images], batch_size=2)
    assert len(batch) == 3
    for path, result in zip(images, batch, strict=True):
        assert result[0]["score"] == pytest.approx(
            torch.sigmoid(logits_of(folder, path)["tumour"])[0].item(), rel=1e-5
        )


def test_several_tasks_and_a_chosen_one(three_task_model: Path, images: list[Path]) -> None:
    classify = pipeline(PIPELINE_TASK, model=str(three_task_model))
    logits = logits_of(three_task_model, images[1])
    every = classify(Image.open(images[1]))
    assert set(every) == {"tumour", "grade", "findings"}
    grade = classify(str(images[1]), classification_task="grade")
    probs = torch.softmax(logits["grade"][0], dim=0)
    assert [e["label"] for e in grade] == [["low", "mid", "high"][i] for i in probs.argsort(descending=True)]
    assert [e["score"] for e in grade] == pytest.approx(sorted(probs.tolist(), reverse=True), rel=1e-5)
    top1 = classify(str(images[1]), classification_task="findings", top_k=1)
    assert len(top1) == 1 and top1[0]["score"] == pytest.approx(
        torch.sigmoid(logits["findings"][0]).max().item()
    )
    with pytest.raises(PredictionError, match="gives no class probabilities"):
        classify(str(images[1]), classification_task="mim")
    with pytest.raises(PredictionError, match="top_k must be at least 1, got 0"):
        classify(str(images[1]), top_k=0)


def test_dicom_path(three_task_model: Path) -> None:
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    from mtl_hf.inference import read_dicom

    path = get_testdata_file("US1_UNCR.dcm")  # real ultrasound frame, RGB
    classify = pipeline(PIPELINE_TASK, model=str(three_task_model))
    got = classify(path, classification_task="tumour")
    model = AutoModel.from_pretrained(three_task_model).eval()
    processor = AutoImageProcessor.from_pretrained(three_task_model)
    with torch.no_grad():
        logit = model(processor(read_dicom(path)[0], return_tensors="pt")["pixel_values"]).logits["tumour"]
    assert got[0]["score"] == pytest.approx(torch.sigmoid(logit)[0].item(), rel=1e-5)
