"""2-D image sets: imagefolder, CSV and JSON manifests, binary / multiclass / multilabel targets, DICOM."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from mtl_hf.data import DataConfig, DataWarning, build_cache, decode_image, decode_mask, label_statistics
from mtl_hf.options import from_dict

from .files import write_csv, write_png


def config(root: Path, images: dict, **extra) -> DataConfig:
    return from_dict(DataConfig, {"kind": "images", "root": str(root), "images": images, **extra})


def test_imagefolder_with_patient_pattern(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    expected = {}
    for cls, patients in (("healthy", ["p1", "p2"]), ("myopathy", ["p3"]), ("polyneuropathy", ["p4"])):
        for p in patients:
            for k in range(2):
                arr = rng.integers(0, 255, (12, 14), dtype=np.uint8)
                write_png(tmp_path / "data" / cls / f"{p}_scan{k}.png", arr)
                expected[f"{cls}/{p}_scan{k}.png"] = (cls, p, arr)
    images = {"patient_id_pattern": r"^(p\d+)_", "targets": {
        "diagnosis": {"kind": "multiclass"},
        "pathology": {"kind": "binary", "negative": ["healthy"]}}}  # fmt: skip
    ds, summary = build_cache(config(tmp_path / "data", images), tmp_path / "cache")
    assert summary.num_samples == 8 and summary.num_patients == 4
    assert ds.features["diagnosis"].names == ["healthy", "myopathy", "polyneuropathy"]
    for row in ds:
        cls, patient, arr = expected[row["sample_id"]]
        assert row["patient_id"] == patient
        assert ds.features["diagnosis"].names[row["diagnosis"]] == cls
        assert row["pathology"] == int(cls != "healthy")
        assert row["image"].mode == "L"  # grey stays grey
        np.testing.assert_array_equal(decode_image(row), arr)
        assert row["slice_index"] == -1 and row["mask"] is None


def test_imagefolder_without_patient_ids_warns(tmp_path: Path) -> None:
    write_png(tmp_path / "a" / "x.png", np.zeros((4, 4), dtype=np.uint8))
    write_png(tmp_path / "b" / "y.png", np.ones((4, 4), dtype=np.uint8))
    with pytest.warns(DataWarning, match="no patient ids"):
        ds, _ = build_cache(config(tmp_path, {"targets": {"label": {"kind": "multiclass"}}}), tmp_path / "c")
    assert sorted(ds["patient_id"]) == ["a/x.png", "b/y.png"]


def test_csv_manifest_multilabel_and_masks(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = []
    labels = [(0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 1, 0), (0, 0, 1), (0, 0, 0)]
    for i, (a, b, c) in enumerate(labels):
        write_png(tmp_path / "img" / f"{i}.png", rng.integers(0, 255, (10, 12), dtype=np.uint8))
        mask = ""
        if a or b or c:
            m = np.zeros((10, 12), dtype=np.uint8)
            m[2:5, 3:7] = 255
            write_png(tmp_path / "mask" / f"{i}.png", m)
            mask = f"mask/{i}.png"
        names = ";".join(
            n for n, f in zip(("myopathy", "myelopathy", "polyneuropathy"), (a, b, c), strict=True) if f
        )
        rows.append({"path": f"img/{i}.png", "patient_id": f"P{i // 2}", "myopathy": a, "myelopathy": b,
                     "polyneuropathy": c, "pathology": int(a or b or c), "names": names, "mask": mask})  # fmt: skip
    write_csv(tmp_path / "manifest.csv", rows)
    images = {"manifest": "manifest.csv", "mask_column": "mask", "targets": {
        "disease": {"kind": "multilabel", "columns": ["myopathy", "myelopathy", "polyneuropathy"]},
        "named": {"kind": "multilabel", "columns": ["names"], "classes": ["myopathy", "myelopathy", "polyneuropathy"]},
        "any": {"kind": "binary", "columns": ["myopathy", "myelopathy", "polyneuropathy"]},
        "pathology": {"kind": "binary", "columns": ["pathology"]}}}  # fmt: skip
    ds, _ = build_cache(config(tmp_path, images), tmp_path / "cache")
    assert ds.features["disease"].feature.names == ["myopathy", "myelopathy", "polyneuropathy"]
    for row, flags in zip(ds, labels, strict=True):
        present = [i for i, f in enumerate(flags) if f]
        assert row["disease"] == present and row["named"] == present
        assert row["any"] == row["pathology"] == int(any(flags))
        mask = decode_mask(row)
        if any(flags):
            assert mask is not None and mask.sum() == 255 * 12 and mask[2:5, 3:7].all()
        else:
            assert mask is None
    stats = label_statistics(ds)["all"]
    assert stats["disease"].counts == [2, 1, 2] and stats["disease"].total == 6
    assert stats["pathology"].counts == [2, 4] and stats["pathology"].pos_weight() == 0.5
    assert stats["disease"].pos_weight() == [2.0, 5.0, 2.0]
    assert stats["disease"].patients == 3


def test_json_manifest_and_binary_from_classes(tmp_path: Path) -> None:
    rows = []
    for i, d in enumerate(["healthy", "myopathy", "myelopathy", "healthy"]):
        write_png(tmp_path / f"{i}.png", np.full((6, 6), 10 * i, dtype=np.uint8))
        rows.append(
            {"file": f"{i}.png", "subject": f"s{i}", "diagnosis": d, "labels": [d] if d != "healthy" else []}
        )
    (tmp_path / "m.json").write_text(json.dumps(rows))
    images = {"manifest": str(tmp_path / "m.json"), "path_column": "file", "patient_column": "subject", "targets": {
        "sick": {"kind": "binary", "columns": ["diagnosis"], "negative": ["healthy"]},
        "labels": {"kind": "multilabel", "columns": ["labels"], "classes": ["myopathy", "myelopathy"]}}}  # fmt: skip
    ds, _ = build_cache(config(tmp_path, images), tmp_path / "cache")
    assert list(ds["sick"]) == [0, 1, 1, 0]
    assert list(ds["labels"]) == [[], [0], [1], []]
    assert list(ds["patient_id"]) == ["s0", "s1", "s2", "s3"]


def test_sixteen_bit_png_stays_sixteen_bit(tmp_path: Path) -> None:
    arr = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    write_png(tmp_path / "x" / "a.png", arr)
    with pytest.warns(DataWarning, match="no patient ids"):
        ds, _ = build_cache(config(tmp_path, {"targets": {"label": {"kind": "multiclass"}}}), tmp_path / "c")
    decoded = decode_image(ds[0])
    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded, arr)


def test_dicom_single_and_multi_frame(tmp_path: Path) -> None:
    for name in ("CT_small.dcm", "emri_small.dcm"):
        shutil.copy(get_testdata_file(name), tmp_path / name)
    write_csv(tmp_path / "m.csv", [
        {"path": "CT_small.dcm", "patient_id": "ct", "label": 1},
        {"path": "emri_small.dcm", "patient_id": "mr", "label": 0}])  # fmt: skip
    images = {"manifest": "m.csv", "targets": {"label": {"kind": "binary", "columns": ["label"]}}}
    ds, summary = build_cache(config(tmp_path, images), tmp_path / "cache")
    assert summary.files_read == 2 and len(ds) == 1 + 10
    rows = {r["sample_id"]: r for r in ds}
    ct = pydicom.dcmread(tmp_path / "CT_small.dcm").pixel_array.astype(np.float64)
    expected = np.round((ct - ct.min()) / (ct.max() - ct.min()) * 65535)
    np.testing.assert_array_equal(decode_image(rows["CT_small.dcm"]), expected.astype(np.uint16))
    mr = pydicom.dcmread(tmp_path / "emri_small.dcm").pixel_array.astype(np.float64)
    mr16 = np.round((mr - mr.min()) / (mr.max() - mr.min()) * 65535).astype(np.uint16)
    for k in (0, 9):
        row = rows[f"emri_small.dcm#{k}"]
        assert row["slice_index"] == k and row["patient_id"] == "mr" and row["label"] == 0
        np.testing.assert_array_equal(decode_image(row), mr16[k])
