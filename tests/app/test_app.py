"""The web app served on a loopback port and driven over HTTP with ``gradio_client``: its
probabilities equal ``mtl-hf predict``'s for the same real files (a PNG of a real T1 slice, the real
NIfTI volume it came from); its images are the explain code's."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from mtl_hf.app import Analyzer, build_app
from mtl_hf.cli import main as cli_main
from tests.inference.conftest import THREE_TASKS, save_model

gradio_client = pytest.importorskip("gradio_client")
pytest.importorskip("gradio")

REAL_T1 = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("app")
    volume = np.asarray(nib.as_closest_canonical(nib.load(REAL_T1)).get_fdata(), dtype=np.float32)
    axial = np.rot90(volume[:, :, volume.shape[2] // 2])
    png = root / "t1_slice.png"
    Image.fromarray((255 * (axial - axial.min()) / (axial.max() - axial.min())).astype(np.uint8)).save(png)
    return {"model": save_model(root / "model", THREE_TASKS), "png": png, "nifti": REAL_T1, "root": root}


@pytest.fixture(scope="module")
def client(files: dict[str, Path]):
    app = build_app(Analyzer(files["model"]))
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        app.close()


def predicted(files: dict[str, Path], name: str) -> dict:
    out = files["root"] / f"predict-{name}"
    assert cli_main(["predict", str(files["model"]), str(files[name]), "-o", str(out), "--no-progress"]) == 0
    return json.loads((out / "predictions.json").read_text())


def test_png_probabilities_equal_predict(client, files: dict[str, Path]) -> None:
    values, bars, attention, reconstruction, masks, info = client.predict(
        gradio_client.handle_file(str(files["png"])), None, api_name="/analyze"
    )
    (expected,) = predicted(files, "png")["images"]
    assert values == expected["probabilities"]
    assert set(values) == {"tumour", "grade", "findings"}
    assert {c["label"] for c in bars["confidences"]} == {
        "tumour", "grade/low", "grade/mid", "grade/high", "findings/oedema", "findings/necrosis",
    }  # fmt: skip
    shown = np.asarray(Image.open(attention))
    assert shown.shape == (64, 64, 3)  # the model's input size
    panel = np.asarray(Image.open(reconstruction))
    assert panel.shape == (64, 3 * 64, 3)  # masked input | reconstruction | composite
    assert masks is None or masks == []  # no segmentation task
    assert "t1_slice.png" in info


def test_volume_slices_equal_predict(client, files: dict[str, Path]) -> None:
    expected = predicted(files, "nifti")
    by_index = {e["index"]: e["probabilities"] for e in expected["images"]}
    peak = expected["volumes"][0]["peak_slice"]["tumour"]
    values, *_rest, info = client.predict(
        gradio_client.handle_file(str(files["nifti"])), None, api_name="/analyze"
    )
    assert values == by_index[peak] and f"slice {peak}" in info  # no slice asked: the peak slice
    other = sorted(by_index)[1]
    values, *_ = client.predict(gradio_client.handle_file(str(files["nifti"])), other, api_name="/analyze")
    assert values == by_index[other]


def test_analyzer_images_come_from_explain(files: dict[str, Path]) -> None:
    import torch

    from mtl_hf.explain.attention import attention_maps, upsample_map
    from mtl_hf.explain.figures import overlay, to_rgb

    analyzer = Analyzer(files["model"])
    result = analyzer.analyze(files["png"])
    image = np.asarray(Image.open(files["png"]))
    pixel_values = analyzer.processor([image], return_tensors="pt")["pixel_values"]
    maps = attention_maps(analyzer.model, pixel_values, rollout=False)
    display = to_rgb(analyzer.processor.unnormalize(pixel_values)[0])
    expected = overlay(display, upsample_map(maps.mean, (64, 64))[0])
    assert result.attention is not None
    assert np.abs(result.attention.astype(int) - np.round(expected * 255).astype(int)).max() <= 1
    assert torch.isclose(maps.mean.sum(), torch.tensor(1.0))
    with pytest.raises(ValueError, match="no slice 999"):
        analyzer.analyze(files["nifti"], 999)


def test_a_regression_task_shows_its_values_and_no_probability_bars(files: dict[str, Path]) -> None:
    from mtl_hf.app.ui import _outputs

    tasks = {
        "tumour": {"type": "binary_classification"},
        "area": {"type": "regression", "num_outputs": 2, "output_names": ["whole", "core"], "target_mean": [5.0, 1.0], "target_std": [2.0, 0.5]},
    }  # fmt: skip
    model = save_model(files["root"] / "regression_model", tasks)
    out = files["root"] / "predict-regression"
    assert cli_main(["predict", str(model), str(files["png"]), "-o", str(out), "--no-progress"]) == 0
    (expected,) = json.loads((out / "predictions.json").read_text())["images"]
    result = Analyzer(model).analyze(files["png"])
    assert result.predictions == {"probabilities": expected["probabilities"], "values": expected["values"]}
    assert set(expected["values"]["area"]) == {"whole", "core"}
    values, bars, *_ = _outputs(result)
    assert values == {**expected["probabilities"], **expected["values"]}
    assert bars == {"tumour": expected["probabilities"]["tumour"]}  # values are not drawn as probabilities
