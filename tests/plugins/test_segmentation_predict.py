"""``mtl-hf predict`` with a segmentation task: masks at each input's size, NIfTI masks in world space."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mtl_hf import MTLImageProcessor, MTLModel
from mtl_hf.inference import predict
from mtl_hf.inference.cli import main as predict_main
from mtl_hf.inference.readers import read_nifti_slices
from tests.conftest import tiny_config
from tests.launch import launch_two_processes

LESION = {"type": "segmentation", "layers": [1, 2], "decoder_channels": [8, 8], "image_skip_channels": 4}


@pytest.fixture(autouse=True)
def _plugin(segmentation_plugin: metadata.Distribution) -> None:
    """Every test here runs with the plugin installed."""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, segmentation_plugin: metadata.Distribution) -> Path:
    torch.manual_seed(0)
    model = MTLModel(tiny_config(tasks={"tumour": {"type": "binary_classification"}, "lesion": LESION}))
    with torch.no_grad():  # logits of both signs, so masks hold both values
        model.head("lesion").decoder.out.weight.normal_(0.0, 1.0)
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    MTLImageProcessor(size=64).save_pretrained(folder)
    return folder


def expected_mask(model: MTLModel, image: np.ndarray) -> np.ndarray:
    """The mask of one image, computed here: processor, model, bilinear resize, sigmoid > 0.5."""
    pixel_values = MTLImageProcessor(size=64)([image], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        logits = model(pixel_values).logits["lesion"]
    resized = F.interpolate(logits[:, None], size=image.shape[:2], mode="bilinear", align_corners=False)
    return (torch.sigmoid(resized[0, 0]) > 0.5).numpy()


def test_masks_of_images_and_volumes_match_the_model_at_the_inputs_own_size(
    model_dir: Path, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    png = rng.integers(0, 255, (50, 70), dtype=np.uint8)
    Image.fromarray(png).save(tmp_path / "a" / "scan.png")
    Image.fromarray(png[::-1]).save(tmp_path / "b" / "scan.png")  # the same name in another folder
    volume = rng.random((20, 24, 6)).astype(np.float32) + 0.1
    # Not RAS+: voxel axes 0, 1, 2 run to the left, superior and anterior. Axial slices (RAS+ axis 2)
    # are planes of voxel axis 1; plane 2 is empty, so it is skipped and its mask is 0.
    affine = np.array([[-2.0, 0, 0, 40], [0, 0, 3.0, -10], [0, 2.5, 0, 5], [0, 0, 0, 1]])
    volume[:, 2, :] = 0.0
    nii = tmp_path / "a" / "brain.nii.gz"
    nib.save(nib.Nifti1Image(volume, affine), nii)

    out = tmp_path / "pred"
    result = predict(model_dir, [tmp_path / "a", tmp_path / "b"], output_dir=out, progress=False)
    model = MTLModel.from_pretrained(model_dir).eval()

    masks = {Path(k).parent.name + "/" + Path(k).name: v for k, v in result.masks.items()}
    first = np.array(Image.open(masks["a/scan.png"]["lesion"]))
    second = np.array(Image.open(masks["b/scan.png"]["lesion"]))
    assert Path(masks["a/scan.png"]["lesion"]).name == "scan.png"
    assert Path(masks["b/scan.png"]["lesion"]).name == "scan_2.png"
    assert first.shape == (50, 70) and set(np.unique(first)) == {0, 255}
    np.testing.assert_array_equal(first == 255, expected_mask(model, png))
    np.testing.assert_array_equal(second == 255, expected_mask(model, png[::-1].copy()))

    # The NIfTI mask lies in the volume's closest RAS+ orientation, with nibabel's own affine for it.
    written = nib.load(masks["a/brain.nii.gz"]["lesion"])
    canonical = nib.as_closest_canonical(nib.load(nii))
    assert written.shape == canonical.shape and written.get_data_dtype() == np.uint8
    np.testing.assert_allclose(written.affine, canonical.affine)
    expected = np.zeros(canonical.shape, dtype=np.uint8)
    for i, image in read_nifti_slices(nii):
        if image.min() != image.max():
            expected[:, :, i] = np.rot90(expected_mask(model, image), k=-1)
    data = np.asarray(written.dataobj)
    np.testing.assert_array_equal(data, expected)
    assert 0 < data.sum() < data.size
    # world coordinates: the input's empty plane is the mask's empty axial slice, at the same place
    assert not data[:, :, 2].any() and data[:, :, 3].any()
    world = affine @ np.array([5, 2, 3, 1])  # a voxel of the empty plane, in millimetres
    voxel = np.rint(np.linalg.solve(written.affine, world)[:3]).astype(int)
    assert voxel[2] == 2 and data[tuple(voxel)] == 0

    saved = json.loads((out / "predictions.json").read_text())
    assert saved["masks"] == result.masks
    assert {"tumour"} == set(result.images[0].predictions)  # classification still scored


def test_a_segmentation_only_model_predicts_masks_from_the_command_line(tmp_path: Path, capsys) -> None:
    torch.manual_seed(1)
    model = MTLModel(tiny_config(tasks={"lesion": LESION}))
    model.save_pretrained(tmp_path / "model")
    MTLImageProcessor(size=64).save_pretrained(tmp_path / "model")
    Image.fromarray(np.full((40, 40), 128, np.uint8)).save(tmp_path / "x.png")
    code = predict_main(
        [str(tmp_path / "model"), str(tmp_path / "x.png"), "-o", str(tmp_path / "out"), "--no-progress"]
    )
    assert code == 0
    assert "segmentation masks of 1 inputs" in capsys.readouterr().out
    assert np.array(Image.open(tmp_path / "out" / "masks" / "lesion" / "x.png")).shape == (40, 40)


def test_two_processes_write_every_mask_once_and_gather_their_paths(
    model_dir: Path, segmentation_plugin: metadata.Distribution, tmp_path: Path
) -> None:
    """``accelerate launch -m mtl_hf.inference.cli`` on two CPU processes: files split, masks gathered."""
    rng = np.random.default_rng(1)
    (tmp_path / "imgs").mkdir()
    images = {f"{i}.png": rng.integers(0, 255, (30 + i, 40), dtype=np.uint8) for i in range(5)}
    for name, image in images.items():
        Image.fromarray(image).save(tmp_path / "imgs" / name)
    out = tmp_path / "out"
    site = str(segmentation_plugin.locate_file(""))
    args = [str(model_dir), str(tmp_path / "imgs"), "-o", str(out), "--batch-size", "2", "--no-progress"]
    proc = launch_two_processes("mtl_hf.inference.cli", *args, extra_paths=[site], timeout=300, module=True)
    assert proc.stdout.count("5 images/slices") == 2  # each process holds the gathered result

    masks = json.loads((out / "predictions.json").read_text())["masks"]
    assert sorted(Path(s).name for s in masks) == sorted(images)
    assert sorted(p.name for p in (out / "masks" / "lesion").iterdir()) == sorted(images)
    model = MTLModel.from_pretrained(model_dir).eval()
    for source, paths in masks.items():
        written = np.array(Image.open(paths["lesion"])) == 255
        np.testing.assert_array_equal(written, expected_mask(model, images[Path(source).name]))


def test_dicom_masks_have_the_image_size_and_one_png_per_frame(model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    from mtl_hf.inference.readers import read_dicom

    ultrasound, mri = (
        get_testdata_file("US1_UNCR.dcm"),
        get_testdata_file("emri_small.dcm"),
    )  # RGB 1 frame; MR 10 frames
    result = predict(model_dir, [ultrasound, mri], output_dir=tmp_path / "out", progress=False)
    model = MTLModel.from_pretrained(model_dir).eval()
    us_mask = np.array(Image.open(result.masks[str(ultrasound)]["lesion"]))
    assert Path(result.masks[str(ultrasound)]["lesion"]).name == "US1_UNCR.png"
    np.testing.assert_array_equal(us_mask == 255, expected_mask(model, read_dicom(ultrasound)[0]))
    frames = read_dicom(mri)
    written = result.masks[str(mri)]
    assert sorted(written) == [f"lesion/{i}" for i in range(10)]
    assert Path(written["lesion/3"]).name == "emri_small_frame0003.png"
    np.testing.assert_array_equal(
        np.array(Image.open(written["lesion/3"])) == 255, expected_mask(model, frames[3])
    )
