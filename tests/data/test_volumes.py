"""The ``volumes`` data kind: CT windows, DICOM series, PET SUV, per-slice labels, and the CT example
trained, predicted and explained end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mtl_hf.data import DataConfig, build_cache, decode_image, decode_mask
from mtl_hf.data.dicom_series import read_dicom_series
from mtl_hf.data.pet import suv_factor_from_dicom, suv_factor_from_sidecar
from mtl_hf.intensity import CT_WINDOWS
from mtl_hf.options import from_dict

from .files import write_csv


def hu_volume(rng: np.random.Generator, shape: tuple[int, int, int] = (10, 12, 6)) -> np.ndarray:
    hu = np.full(shape, -1000, np.int16)
    hu[1:-1, 1:-1, :] = rng.integers(-100, 1200, size=(shape[0] - 2, shape[1] - 2, shape[2]))
    return hu


def volumes_config(root: Path, **volumes) -> DataConfig:
    extra = {k: volumes.pop(k) for k in ("image_size",) if k in volumes}
    return from_dict(DataConfig, {"kind": "volumes", "root": str(root), "volumes": volumes, **extra}, "data")


def test_ct_windows_as_channels_match_a_hand_computation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for p in range(2):
        hu = hu_volume(rng)
        nib.save(nib.Nifti1Image(hu, np.eye(4)), tmp_path / f"p{p}.nii.gz")
        rows.append({"path": f"p{p}.nii.gz", "patient_id": f"P{p}", "label": p})
    write_csv(tmp_path / "m.csv", rows)
    windows = ["brain", {"level": 300, "width": 1000}]
    config = volumes_config(
        tmp_path,
        manifest="m.csv",
        channels=[{"column": "path", "name": "ct", "intensity": {"method": "window", "windows": windows}}],
        targets={"label": {"kind": "binary", "columns": ["label"]}},
        storage_dtype="float32",
    )
    assert config.model_channels == 2 and config.channel_names == ["ct"]
    ds, summary = build_cache(config, tmp_path / "cache")
    assert summary.num_patients == 2 and len(ds) == 12
    row = next(r for r in ds if r["sample_id"] == "p1.nii.gz/003")
    hu = np.asarray(nib.load(tmp_path / "p1.nii.gz").dataobj, np.float64)[:, :, 3]
    for c, (lo, hi) in enumerate([(0.0, 80.0), (-200.0, 800.0)]):
        expected = np.rot90((np.clip(hu, lo, hi) - lo) / (hi - lo))
        np.testing.assert_allclose(decode_image(row)[c], expected, atol=1e-6)
    assert row["label"] == 1 and row["patient_id"] == "P1" and decode_mask(row) is None
    assert CT_WINDOWS["brain"] == (40.0, 80.0)


def test_per_slice_labels_and_mask_target(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    hu = hu_volume(rng)
    mask = np.zeros(hu.shape, np.uint8)
    mask[3:6, 3:6, 2] = 1  # 9 pixels in slice 2
    mask[4, 4, 4] = 1  # 1 pixel in slice 4
    nib.save(nib.Nifti1Image(hu, np.eye(4)), tmp_path / "v.nii.gz")
    nib.save(nib.Nifti1Image(mask, np.eye(4)), tmp_path / "mask.nii.gz")
    write_csv(
        tmp_path / "m.csv",
        [{"path": "v.nii.gz", "mask": "mask.nii.gz", "slice": s, "patient_id": "P", "grade": g}
         for s, g in ((2, "high"), (4, "low"), (5, "low"))],
    )  # fmt: skip
    config = volumes_config(
        tmp_path,
        manifest="m.csv",
        channels=[{"column": "path", "intensity": {"method": "window", "windows": ["soft_tissue"]}}],
        slice_column="slice",
        mask_column="mask",
        mask_target="lesion",
        min_mask_pixels=2,
        targets={"grade": {"kind": "multiclass", "columns": ["grade"], "classes": ["low", "high"]}},
    )
    ds, _ = build_cache(config, tmp_path / "cache")
    got = {r["slice_index"]: (r["grade"], r["lesion"]) for r in ds}
    assert got == {2: (1, 1), 4: (0, 0), 5: (0, 0)}  # slice 4's single pixel is under min_mask_pixels
    write_csv(tmp_path / "bad.csv", [{"path": "v.nii.gz", "slice": 9, "patient_id": "P", "grade": "low"}])
    bad = volumes_config(
        tmp_path, manifest="bad.csv", slice_column="slice",
        targets={"grade": {"kind": "multiclass", "columns": ["grade"], "classes": ["low", "high"]}},
    )  # fmt: skip
    from mtl_hf.data import DataError

    with pytest.raises(DataError, match=r"slice indices \[9\] outside the volume's 6 axial slices"):
        build_cache(bad, tmp_path / "cache")


def test_dicom_series_of_real_ct_slices_reads_hounsfield_units_in_ras(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    series = tmp_path / "series"
    series.mkdir()
    expected = []
    for k, z in enumerate([-70.0, -75.7, -72.5]):  # written out of order
        ds = source.copy()
        pixels = source.pixel_array.astype(np.int16) + np.int16(10 * k)
        ds.PixelData = pixels.tobytes()
        ds.ImagePositionPatient = [-158.135803, -179.035797, z]
        ds.InstanceNumber = k + 1
        ds.save_as(series / f"slice{k}.dcm")
        expected.append((z, pixels.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)))
    volume = read_dicom_series(series).data
    # LPS voxel (row r, column c, slice s) -> RAS: x = column flipped, y = row flipped, z ascending.
    ordered = [hu for _, hu in sorted(expected, key=lambda e: e[0])]
    hand = np.stack(ordered, axis=-1).transpose(1, 0, 2)[::-1, ::-1, :]
    np.testing.assert_array_equal(volume, hand)
    assert volume.min() < -800  # air in Hounsfield units: the intercept -1024 was applied


def test_suv_factors_from_dicom_header_and_bids_sidecar(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.Units = "BQML"
    ds.PatientWeight = 70.0
    ds.DecayCorrection = "START"
    ds.SeriesTime = "110000"
    info = Dataset()
    info.RadionuclideTotalDose = 3.7e8
    info.RadionuclideHalfLife = 6586.2  # F-18
    info.RadiopharmaceuticalStartTime = "100000"
    ds.RadiopharmaceuticalInformationSequence = pydicom.Sequence([info])
    decayed = 3.7e8 * 2 ** (-3600 / 6586.2)
    assert suv_factor_from_dicom(ds) == pytest.approx(70_000 / decayed)
    ds.Units = "CNTS"
    assert suv_factor_from_dicom(ds) is None  # counts: no SUV, min-max instead
    path = tmp_path / "pet.nii.gz"
    path.write_bytes(b"")
    assert suv_factor_from_sidecar(str(path)) is None
    (tmp_path / "pet.json").write_text(
        json.dumps({"Units": "Bq/mL", "BodyWeight": 80, "InjectedRadioactivity": 250})
    )
    assert suv_factor_from_sidecar(str(path)) == pytest.approx(80_000 / 250e6)


@pytest.fixture(scope="module")
def ct_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("nilearn")
    from mtl_hf.data.ct_example import build_ct_example

    root = tmp_path_factory.mktemp("ct")
    build_ct_example(root, patients=8, seed=0)
    return root


def test_ct_example_config_trains_predicts_and_explains(ct_example: Path, tmp_path: Path) -> None:
    from transformers import AutoImageProcessor

    from mtl_hf.explain import explain
    from mtl_hf.inference import predict
    from mtl_hf.train import train
    from mtl_hf.training.config import load_config

    config_path = Path(__file__).parents[2] / "configs" / "ct-volumes.yaml"
    overrides = [
        f"output_dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}", f"data.root={ct_example}",
        "data.image_size=32", "model.backbone_config.image_size=32", "training.epochs=1",
        "training.batch_size=16", "training.bootstrap_resamples=20", "data.num_proc=2",
    ]  # fmt: skip
    out = train(load_config(config_path, overrides)).output_dir
    assert json.loads((out / "test_metrics.json").read_text())
    best = out / "best_model"
    processor = AutoImageProcessor.from_pretrained(best)
    assert processor.channel_names == ["ct"] and processor.num_channels == 3
    assert processor.output_channel_names == ["ct:brain", "ct:subdural", "ct:bone"]
    assert json.loads((best / "config.json").read_text())["backbone_config"]["num_channels"] == 3
    # predict reads a CT volume in HU and windows it as in training; a DICOM series folder too.
    scan = ct_example / "volumes" / "CT001_ct.nii.gz"
    result = predict(best, [scan], progress=False)
    assert not result.errors and result.volumes and result.volumes[0].source == str(scan)
    assert "Hounsfield windows brain [0, 80], subdural" in result.intensity
    figures = explain(
        [best], output_dir=tmp_path / "explain", images=[scan], max_images=1, rollout=False, progress=False
    )
    assert any(p.name == "image_0.png" for p in figures.figures)


def test_ct_example_volume_shapes(ct_example: Path) -> None:
    hu = np.asarray(nib.load(ct_example / "volumes" / "CT001_ct.nii.gz").dataobj)
    mask = np.asarray(nib.load(ct_example / "volumes" / "CT001_mask.nii.gz").dataobj)
    assert hu.min() == -1000 or hu.min() < -900
    assert mask.any() and 55 <= np.median(hu[mask > 0]) <= 85  # the lesion is hyperdense
    brain_like = (hu > 0) & (hu < 50)
    assert brain_like.sum() > 10_000
    shutil.rmtree(ct_example / "unused", ignore_errors=True)
