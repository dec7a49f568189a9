"""Partially labelled manifests and continuous targets: empty cells become each kind's missing value,
batches carry NaN / IGNORE_INDEX there, statistics and patient splits count what is present."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mtl_hf.data import (
    DataConfig,
    DataError,
    MTLDataCollator,
    build_cache,
    label_statistics,
    prepare_datasets,
)
from mtl_hf.data.sampling import undersample
from mtl_hf.data.splits import patient_strata
from mtl_hf.heads import IGNORE_INDEX
from mtl_hf.options import from_dict

from .files import write_csv, write_png

TARGETS = {
    "tumour": {"kind": "binary", "columns": ["tumour"]},
    "grade": {"kind": "multiclass", "columns": ["grade"], "classes": ["low", "high"]},
    "lesions": {"kind": "multilabel", "columns": ["cyst", "calcified"]},
    "size": {"kind": "continuous", "columns": ["volume_ml", "thickness_mm"]},
}
# tumour, grade, cyst, calcified, volume_ml, thickness_mm; "" is an empty cell
ROWS = [
    ("1", "high", "1", "0", "12.5", "3"),
    ("", "low", "0", "0", "", "2.25"),
    ("0", "", "", "1", "7", ""),
    ("1", "high", "1", "1", " 4.0 ", "1.5"),
    ("", "", "", "", "", ""),
    ("0", "low", "0", "1", "nan", "0.5"),
]


def write_manifest(root: Path, rows=ROWS) -> None:
    records = []
    for i, (t, g, c, k, v, th) in enumerate(rows):
        write_png(root / f"{i}.png", np.full((8, 8), 20 * i, dtype=np.uint8))
        records.append({"path": f"{i}.png", "patient_id": f"P{i // 2}", "tumour": t, "grade": g,
                        "cyst": c, "calcified": k, "volume_ml": v, "thickness_mm": th})  # fmt: skip
    write_csv(root / "manifest.csv", records)


def config(root: Path, targets=TARGETS, **extra) -> DataConfig:
    images = {"manifest": "manifest.csv", "targets": targets}
    return from_dict(DataConfig, {"kind": "images", "root": str(root), "images": images, **extra})


def same(a: list[float], b: list[float]) -> bool:
    return all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True))


def test_empty_cells_are_missing_labels_in_the_data_set_and_the_batch(tmp_path: Path) -> None:
    write_manifest(tmp_path)
    ds, _ = build_cache(config(tmp_path), tmp_path / "cache")
    assert list(ds["tumour"]) == [1, -1, 0, 1, -1, 0]
    assert list(ds["grade"]) == [1, 0, -1, 1, -1, 0]  # ClassLabel: -1 is the datasets "no label" value
    assert list(ds["lesions"]) == [[0], [], None, [0, 1], None, [1]]
    nan = math.nan
    expected_size = [[12.5, 3.0], [nan, 2.25], [7.0, nan], [4.0, 1.5], [nan, nan], [nan, 0.5]]
    assert all(same(row, want) for row, want in zip(ds["size"], expected_size, strict=True))
    assert str(ds.features["size"].feature.dtype) == "float32" and ds.features["size"].length == 2

    collate = MTLDataCollator.for_dataset(ds, {t: t for t in TARGETS})
    rows = [{**r, "pixel_values": torch.zeros(1, 8, 8)} for r in ds.with_format(None)]
    labels = collate(rows)["labels"]
    torch.testing.assert_close(labels["tumour"], torch.tensor([1.0, nan, 0.0, 1.0, nan, 0.0]), equal_nan=True)
    assert labels["grade"].dtype == torch.long
    assert labels["grade"].tolist() == [1, 0, IGNORE_INDEX, 1, IGNORE_INDEX, 0]
    lesions = torch.tensor([[1, 0], [0, 0], [nan, nan], [1, 1], [nan, nan], [0, 1]], dtype=torch.float32)
    torch.testing.assert_close(labels["lesions"], lesions, equal_nan=True)
    size = torch.tensor(expected_size, dtype=torch.float32)
    assert labels["size"].dtype == torch.float32
    torch.testing.assert_close(labels["size"], size, equal_nan=True)


def test_statistics_count_the_labelled_samples(tmp_path: Path) -> None:
    write_manifest(tmp_path)
    ds, _ = build_cache(config(tmp_path), tmp_path / "cache")
    stats = label_statistics(ds)["all"]
    assert (stats["tumour"].counts, stats["tumour"].labelled, stats["tumour"].total) == ([2, 2], 4, 6)
    assert stats["tumour"].pos_weight() == 1.0
    assert (stats["grade"].counts, stats["grade"].labelled) == ([2, 2], 4)
    assert (stats["lesions"].counts, stats["lesions"].labelled) == ([2, 2], 4)
    assert stats["lesions"].pos_weight() == [1.0, 1.0]  # (labelled - positives) / positives
    size = stats["size"]
    assert size.kind == "continuous" and size.counts == [3, 4] and size.labelled == 2
    volumes, thickness = [12.5, 7.0, 4.0], [3.0, 2.25, 1.5, 0.5]
    assert size.summary["mean"] == pytest.approx([np.mean(volumes), np.mean(thickness)])
    assert size.summary["std"] == pytest.approx([np.std(volumes), np.std(thickness)])
    assert size.summary["min"] == [4.0, 0.5] and size.summary["max"] == [12.5, 3.0]
    out = size.to_dict()
    assert out["counts"] == {"output_0": 3, "output_1": 4} and out["labelled"] == 2


def test_a_non_numeric_continuous_cell_names_file_row_and_column(tmp_path: Path) -> None:
    rows = list(ROWS)
    rows[3] = ("1", "high", "1", "1", "4,0", "1.5")
    write_manifest(tmp_path, rows)
    with pytest.raises(
        DataError, match=r"manifest\.csv \(row 4\).*'size'.*'volume_ml'.*expected a number.*'4,0'"
    ):
        build_cache(config(tmp_path), tmp_path / "cache")


def test_continuous_config_is_checked() -> None:
    with pytest.raises(ValueError, match="classes: a continuous target has none"):
        from_dict(DataConfig, {"kind": "images", "root": ".", "images": {"manifest": "m.csv", "targets": {
            "age": {"kind": "continuous", "columns": ["age"], "classes": ["a"]}}}})  # fmt: skip
    with pytest.raises(ValueError, match="kinds are binary, multiclass, multilabel, continuous"):
        from_dict(DataConfig, {"kind": "images", "root": ".", "images": {"manifest": "m.csv", "targets": {
            "age": {"kind": "ordinal", "columns": ["age"]}}}})  # fmt: skip


def test_patient_strata_use_the_labelled_samples() -> None:
    patients = ["a", "a", "b", "b", "c", "d"]
    assert patient_strata(patients, [-1, 1, 0, -1, -1, 0], "binary") == {
        "a": "1",
        "b": "0",
        "c": "none",
        "d": "0",
    }
    assert patient_strata(patients, [2, -1, -1, -1, 0, 1], "multiclass") == {
        "a": "2",
        "b": "none",
        "c": "0",
        "d": "1",
    }
    assert patient_strata(patients, [None, [1], [], None, None, []], "multilabel") == {
        "a": "1", "b": "0", "c": "none", "d": "0"}  # fmt: skip
    # Continuous: quartiles of the patients' mean first output (8 patients with a value, 2 per bin).
    values = {f"p{i}": [[float(v)], [float(v) + 2.0]] for i, v in enumerate([5, 1, 7, 3, 9, 0, 2, 8])}
    ids = [p for p, vs in values.items() for _ in vs] + ["empty"]
    labels = [v for vs in values.values() for v in vs] + [[math.nan]]
    strata = patient_strata(ids, labels, "continuous")
    # means 6, 2, 8, 4, 10, 1, 3, 9 -> sorted 1 2 3 4 | 6 8 9 10 -> quartile edges 2.75, 5, 8.25
    assert strata == {"p0": "q2", "p1": "q0", "p2": "q2", "p3": "q1", "p4": "q3", "p5": "q0", "p6": "q1",
                      "p7": "q3", "empty": "none"}  # fmt: skip


def test_undersampling_keeps_unlabelled_samples_and_refuses_continuous() -> None:
    kept = undersample(list(range(7)), [1, 1, 1, 0, -1, -1, 0], "binary", seed=0)
    assert {4, 5} <= set(kept) and len(kept) == 6  # two of each class, plus both unlabelled
    with pytest.raises(DataError, match="continuous targets have no classes"):
        undersample([0, 1], [[1.0], [2.0]], "continuous", seed=0)


def test_split_of_a_partially_labelled_manifest_stratifies_on_what_is_present(tmp_path: Path) -> None:
    write_manifest(tmp_path)
    prepared = prepare_datasets(
        config(tmp_path, split={"train": 0.34, "validation": 0.33, "test": 0.33, "stratify_by": "size"}),
        tmp_path / "cache",
    )
    assert prepared.target_kinds == {"tumour": "binary", "grade": "multiclass", "lesions": "multilabel",
                                     "size": "continuous"}  # fmt: skip
    # Patients P0 (12.5), P1 (7, 4 -> 5.5), P2 (none present in volume_ml) -> 2 with a value: 1 bin.
    assert prepared.split_manifest.strata == {"P0": "q0", "P1": "q0", "P2": "none"}
    assert sorted(p for s in prepared.split_manifest.splits.values() for p in s) == ["P0", "P1", "P2"]
