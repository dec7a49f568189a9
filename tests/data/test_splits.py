"""Patient-level stratified splits, the split manifest, nested training fractions and undersampling."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mtl_hf.data import DataConfig, DataError, make_split, prepare_datasets, training_fraction, undersample
from mtl_hf.options import from_dict

from .files import write_csv, write_png


def strata_of(n_pos: int, n_neg: int) -> dict[str, str]:
    return {**{f"pos{i:03d}": "1" for i in range(n_pos)}, **{f"neg{i:03d}": "0" for i in range(n_neg)}}


def test_make_split_is_disjoint_complete_stratified_and_seeded() -> None:
    strata = strata_of(30, 70)
    split = make_split(strata, (0.7, 0.15, 0.15), seed=0)
    sets = [set(split[k]) for k in ("train", "validation", "test")]
    assert sum(len(s) for s in sets) == 100 and set.union(*sets) == set(strata)
    assert all(not (a & b) for i, a in enumerate(sets) for b in sets[i + 1 :])
    assert [len(s) for s in sets] == [70, 15, 15]
    for part in sets:  # 30 % positives in every part, up to one patient
        positives = sum(strata[p] == "1" for p in part)
        assert abs(positives - 0.3 * len(part)) <= 1
    assert make_split(strata, (0.7, 0.15, 0.15), seed=0) == split
    assert make_split(strata, (0.7, 0.15, 0.15), seed=1) != split


def test_rare_stratum_does_not_break_the_split() -> None:
    strata = strata_of(1, 9)
    split = make_split(strata, (0.6, 0.2, 0.2), seed=3)
    assert sorted(len(v) for v in split.values()) == [2, 2, 6]


def test_nested_stratified_training_fractions() -> None:
    strata = strata_of(40, 160)
    subsets = {f: training_fraction(strata, f, seed=5) for f in (0.05, 0.1, 0.25, 0.5, 1.0)}
    fractions = sorted(subsets)
    for small, large in itertools.pairwise(fractions):
        assert subsets[small] < subsets[large]
    for f, subset in subsets.items():
        assert len(subset) == int(np.ceil(f * 200))
        assert abs(sum(strata[p] == "1" for p in subset) - 0.2 * len(subset)) <= 1
    assert training_fraction(strata, 0.1, seed=6) != subsets[0.1]


def test_undersample_balances_and_is_seeded() -> None:
    labels = [1] * 30 + [0] * 70
    kept = undersample(list(range(100)), labels, "binary", seed=0)
    assert Counter(labels[i] for i in kept) == {0: 30, 1: 30}
    assert all(i in kept for i in range(30))
    assert kept == undersample(list(range(100)), labels, "binary", seed=0)
    assert kept != undersample(list(range(100)), labels, "binary", seed=1)
    multi = [[0], [], [], [1, 2], [], []]
    kept = undersample(list(range(6)), multi, "multilabel", seed=0)
    assert sorted(len(multi[i]) > 0 for i in kept) == [False, False, True, True]


@pytest.fixture
def image_set(tmp_path: Path) -> Path:
    """40 patients (12 with pathology), 2-4 images each."""
    rng = np.random.default_rng(0)
    rows = []
    for p in range(40):
        sick = int(p < 12)
        for k in range(2 + p % 3):
            path = write_png(tmp_path / "img" / f"{p}_{k}.png", rng.integers(0, 255, (4, 4), dtype=np.uint8))
            rows.append(
                {"path": str(path.relative_to(tmp_path)), "patient_id": f"P{p:02d}", "pathology": sick}
            )
    write_csv(tmp_path / "m.csv", rows)
    return tmp_path


def image_config(root: Path, **extra) -> DataConfig:
    images = {"manifest": "m.csv", "targets": {"pathology": {"kind": "binary", "columns": ["pathology"]}}}
    return from_dict(DataConfig, {"kind": "images", "root": str(root), "images": images, **extra})


def patients(dataset) -> set[str]:
    return set(dataset["patient_id"])


def test_prepare_splits_by_patient_with_sampling_on_train_only(image_set: Path, tmp_path: Path) -> None:
    full = prepare_datasets(image_config(image_set, seed=2), tmp_path / "cache")
    d = full.datasets
    parts = [patients(d[k]) for k in ("train", "validation", "test")]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert len(set.union(*parts)) == 40 and [len(p) for p in parts] == [28, 6, 6]
    assert sum(len(d[k]) for k in d) == sum(2 + p % 3 for p in range(40))
    sick = {f"P{p:02d}" for p in range(12)}
    assert [len(p & sick) for p in parts] == [8, 2, 2]  # 30 % in every split
    manifest = json.loads(Path(full.split_manifest_path).read_text())
    assert {k: set(v) for k, v in manifest["splits"].items()} == dict(
        zip(("train", "validation", "test"), parts, strict=True)
    )

    sampled = prepare_datasets(
        image_config(image_set, seed=2, sampling={"train_fraction": 0.5, "undersample": True}),
        tmp_path / "cache",
    )
    s = sampled.datasets
    assert s["validation"]["sample_id"] == d["validation"]["sample_id"]
    assert s["test"]["sample_id"] == d["test"]["sample_id"]
    assert patients(s["train"]) <= parts[0] and len(patients(d["train"]) & patients(s["train"])) <= 14
    counts = Counter(s["train"]["pathology"])
    assert counts[0] == counts[1] > 0
    assert sampled.split_manifest_sha256 == full.split_manifest_sha256


def test_split_manifest_is_reused_and_checked(image_set: Path, tmp_path: Path) -> None:
    first = prepare_datasets(image_config(image_set), tmp_path / "cache")
    path = Path(first.split_manifest_path)
    data = json.loads(path.read_text())
    moved = data["splits"]["train"].pop()
    data["splits"]["test"].append(moved)
    path.write_text(json.dumps(data))
    again = prepare_datasets(image_config(image_set), tmp_path / "cache")
    assert moved in patients(again.datasets["test"]) and moved not in patients(again.datasets["train"])
    data["splits"]["test"].remove(moved)
    path.write_text(json.dumps(data))
    with pytest.raises(
        DataError, match=rf"{path.name}: 1 patients of the data are not in this split manifest \({moved}\)"
    ):
        prepare_datasets(image_config(image_set), tmp_path / "cache")
    other = prepare_datasets(image_config(image_set, seed=1), tmp_path / "cache")
    assert other.split_manifest_path != first.split_manifest_path


def test_fold_splits_test_and_validate_every_patient_once() -> None:
    from mtl_hf.data.splits import fold_splits

    strata = {f"p{i:02d}": "1" if i % 4 else "0" for i in range(22)}  # 16 positive, 6 negative
    folds = fold_splits(strata, 5, seed=3)
    assert folds == fold_splits(strata, 5, seed=3) and folds != fold_splits(strata, 5, seed=4)
    tested = [p for f in folds for p in f["test"]]
    validated = [p for f in folds for p in f["validation"]]
    assert sorted(tested) == sorted(validated) == sorted(strata)  # each exactly once
    for j, fold in enumerate(folds):
        parts = [set(fold[name]) for name in ("train", "validation", "test")]
        assert set.union(*parts) == set(strata) and sum(map(len, parts)) == len(strata)
        assert fold["validation"] == folds[(j + 1) % 5]["test"]
        assert len(fold["test"]) in (4, 5)
        assert 1 <= sum(strata[p] == "0" for p in fold["test"]) <= 2  # strata spread over the folds
    with pytest.raises(ValueError, match="folds: needs at least 3"):
        fold_splits(strata, 2, seed=0)
    with pytest.raises(ValueError, match="folds: 30 folds need at least 30 patients, the data have 22"):
        fold_splits(strata, 30, seed=0)
