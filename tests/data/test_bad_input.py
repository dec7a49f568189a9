"""Every kind of bad input: a DataError naming the file, or with skip_bad a warning and a counted skip."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mtl_hf.data import DataConfig, DataError, DataWarning, build_cache
from mtl_hf.options import from_dict

from .files import brats_config, make_volumes, write_case, write_csv, write_png

BAD_ID = "BraTS2021_00042"


def truncated(folder: Path) -> str:
    path = write_case(folder, BAD_ID, make_volumes(np.random.default_rng(1)))["flair"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return str(path)


def shape_mismatch(folder: Path) -> str:
    vols = make_volumes(np.random.default_rng(2))
    vols["flair"] = vols["flair"][:, :, :-1]
    return str(write_case(folder, BAD_ID, vols)["flair"])


def four_d(folder: Path) -> str:
    vols = make_volumes(np.random.default_rng(3))
    vols["flair"] = np.stack([vols["flair"], vols["flair"]], axis=-1)
    return str(write_case(folder, BAD_ID, vols)["flair"])


def missing_modality(folder: Path) -> str:
    vols = make_volumes(np.random.default_rng(4))
    del vols["flair"]
    write_case(folder, BAD_ID, vols)
    return str(folder)


def nan_voxels(folder: Path) -> str:
    vols = make_volumes(np.random.default_rng(5))
    vols["flair"] = vols["flair"].astype(np.float32)
    vols["flair"][3, 3, 3] = np.nan
    return str(write_case(folder, BAD_ID, vols)["flair"])


def label_outside_set(folder: Path) -> str:
    vols = make_volumes(np.random.default_rng(6))
    vols["seg"][4, 4, 4] = 7
    return str(write_case(folder, BAD_ID, vols)["seg"])


def no_segmentation(folder: Path) -> str:
    vols = make_volumes(np.random.default_rng(7))
    del vols["seg"]
    write_case(folder, BAD_ID, vols)
    return str(folder)


CASES: dict[str, tuple[Callable[[Path], str], str]] = {
    "truncated .nii.gz": (truncated, "cannot read"),
    "shape differs from segmentation": (shape_mismatch, "differs from its segmentation"),
    "4-D volume": (four_d, "expected a 3-D volume"),
    "missing modality": (missing_modality, "missing modality flair"),
    "NaN voxels": (nan_voxels, "NaN"),
    "label outside the declared set": (label_outside_set, r"labels \[7\] outside the declared set"),
    "no segmentation": (no_segmentation, "no segmentation"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_brats_input(brats_root: Path, tmp_path: Path, case: str) -> None:
    make, reason = CASES[case]
    named = make(brats_root / BAD_ID)
    with pytest.raises(DataError, match=reason) as info:
        build_cache(brats_config(brats_root), tmp_path / "cache")
    assert info.value.path == named and named in str(info.value)
    with pytest.warns(DataWarning, match=reason):
        ds, summary = build_cache(brats_config(brats_root, skip_bad=True), tmp_path / "cache")
    assert [s.path for s in summary.skipped] == [named]
    assert summary.num_patients == 6 and BAD_ID not in set(ds["patient_id"])


def images_config(root: Path, manifest: str, **extra) -> DataConfig:
    targets = extra.pop("targets", {"diagnosis": {"kind": "multiclass", "columns": ["diagnosis"],
                                                  "classes": ["healthy", "myopathy"]}})  # fmt: skip
    return from_dict(
        DataConfig,
        {"kind": "images", "root": str(root), "images": {"manifest": manifest, "targets": targets}, **extra},
    )


def small_image_set(root: Path) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        path = write_png(root / f"img{i}.png", rng.integers(0, 255, (16, 20), dtype=np.uint8))
        rows.append({"path": path.name, "patient_id": f"p{i}", "diagnosis": ["healthy", "myopathy"][i % 2]})
    return rows


def test_unreadable_image(tmp_path: Path) -> None:
    rows = small_image_set(tmp_path)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    rows.append({"path": "broken.png", "patient_id": "p9", "diagnosis": "healthy"})
    write_csv(tmp_path / "m.csv", rows)
    with pytest.raises(DataError, match="cannot read image") as info:
        build_cache(images_config(tmp_path, "m.csv"), tmp_path / "cache")
    assert info.value.path == str(bad)
    with pytest.warns(DataWarning, match="broken.png"):
        ds, summary = build_cache(images_config(tmp_path, "m.csv", skip_bad=True), tmp_path / "cache")
    assert [s.path for s in summary.skipped] == [str(bad)] and len(ds) == 4


def test_label_outside_declared_classes(tmp_path: Path) -> None:
    rows = small_image_set(tmp_path)
    rows[2]["diagnosis"] = "myopaty"
    write_csv(tmp_path / "m.csv", rows)
    with pytest.raises(DataError, match=r"m.csv \(row 3\).*'myopaty' is not in the declared classes"):
        build_cache(images_config(tmp_path, "m.csv"), tmp_path / "cache")
    with pytest.warns(DataWarning, match="myopaty"):
        ds, summary = build_cache(images_config(tmp_path, "m.csv", skip_bad=True), tmp_path / "cache")
    assert len(summary.skipped) == 1 and "row 3" in summary.skipped[0].path and len(ds) == 3


def test_flag_that_is_not_binary(tmp_path: Path) -> None:
    rows = small_image_set(tmp_path)
    for i, row in enumerate(rows):
        row["pathology"] = [0, 1, 2, 1][i]
    write_csv(tmp_path / "m.csv", rows)
    targets = {"pathology": {"kind": "binary", "columns": ["pathology"]}}
    with pytest.raises(DataError, match=r"row 3.*expected 0/1"):
        build_cache(images_config(tmp_path, "m.csv", targets=targets), tmp_path / "cache")


def test_missing_image_file_and_column(tmp_path: Path) -> None:
    rows = small_image_set(tmp_path)
    rows.append({"path": "nowhere.png", "patient_id": "p8", "diagnosis": "healthy"})
    write_csv(tmp_path / "m.csv", rows)
    with pytest.raises(DataError, match="nowhere.png: image file not found"):
        build_cache(images_config(tmp_path, "m.csv"), tmp_path / "cache")
    targets = {"label": {"kind": "binary", "columns": ["sick"]}}
    with pytest.raises(DataError, match="no column 'sick'"):
        build_cache(images_config(tmp_path, "m.csv", targets=targets), tmp_path / "cache")


def test_mask_of_another_size(tmp_path: Path) -> None:
    rows = small_image_set(tmp_path)
    write_png(tmp_path / "mask0.png", np.zeros((8, 8), dtype=np.uint8))
    for row in rows:
        row["mask"] = ""
    rows[0]["mask"] = "mask0.png"
    write_csv(tmp_path / "m.csv", rows)
    config = from_dict(DataConfig, {"kind": "images", "root": str(tmp_path), "images": {
        "manifest": "m.csv", "mask_column": "mask",
        "targets": {"diagnosis": {"kind": "multiclass", "columns": ["diagnosis"]}}}})  # fmt: skip
    with pytest.raises(DataError, match=r"mask0.png: mask size \(8, 8\) differs from its image's \(16, 20\)"):
        build_cache(config, tmp_path / "cache")


def test_config_errors_name_the_key() -> None:
    from mtl_hf.options import OptionsError

    with pytest.raises(OptionsError, match=r"data\.brats\.min_tumor_pixels: unknown key"):
        from_dict(DataConfig, {"kind": "brats", "root": ".", "brats": {"min_tumor_pixels": 3}}, path="data")
    with pytest.raises(OptionsError, match=r"data\.split: .*must be 1"):
        from_dict(DataConfig, {"kind": "brats", "root": ".", "split": {"train": 0.9}}, path="data")
    with pytest.raises(OptionsError, match=r"data\.brats: modalities: give 1 modality"):
        from_dict(
            DataConfig, {"kind": "brats", "root": ".", "brats": {"modalities": ["t1", "t2"]}}, path="data"
        )
    with pytest.raises(OptionsError, match="unknown modality 'dwi'"):
        from_dict(DataConfig, {"kind": "brats", "root": ".", "brats": {"modalities": ["dwi"]}})
    with pytest.raises(OptionsError, match="needs at least one target"):
        from_dict(DataConfig, {"kind": "images", "root": "."})
