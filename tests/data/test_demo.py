"""Demo data: deterministic from the seed, readable by the data configs it proposes, and learnable."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score

from mtl_hf.data import DataConfig, build_cache, build_demo_data, decode_image, decode_mask, prepare_datasets
from mtl_hf.options import from_dict

SMALL = {"brats_patients": 3, "brats_slices": 6, "ultrasound_patients": 4, "images_per_patient": (2, 3)}


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    a = build_demo_data(tmp_path / "a", seed=3, **SMALL)
    build_demo_data(tmp_path / "b", seed=3, workers=2, **SMALL)  # patients drawn in two processes
    build_demo_data(tmp_path / "c", seed=4, **SMALL)
    files_a, files_b, files_c = (digest(tmp_path / k) for k in "abc")
    assert files_a == files_b
    assert files_a.keys() == files_c.keys() and files_a != files_c
    assert len([f for f in files_a if f.startswith("brats/") and f.endswith(".nii.gz")]) == 3 * 5
    assert len(a.brats_patients) == 3 and a.num_ultrasound_images == sum(
        p.num_images for p in a.ultrasound_patients
    )
    card = (tmp_path / "a" / "README.md").read_text()
    assert "What is real and what is synthetic" in card and "MNI152" in card and "pydicom-data" in card


def test_2023_naming(tmp_path: Path) -> None:
    summary = build_demo_data(tmp_path, seed=0, brats_naming="2023", tumour_free_fraction=0.0, **SMALL)
    pid = summary.brats_patients[0].patient_id
    seg = np.asarray(nib.load(tmp_path / "brats" / pid / f"{pid}-seg.nii.gz").dataobj)
    assert (tmp_path / "brats" / pid / f"{pid}-t2f.nii.gz").is_file()
    assert set(np.unique(seg)) <= {0, 1, 2, 3} and 4 not in seg


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo")
    summary = build_demo_data(out, seed=0, brats_patients=8, brats_slices=20, ultrasound_patients=14)
    return out, summary


def test_demo_configs_read_the_demo(demo, tmp_path: Path) -> None:
    out, summary = demo
    brats = prepare_datasets(from_dict(DataConfig, summary.brats_config), tmp_path / "cache")
    assert brats.summary.num_patients == 8 and brats.summary.num_samples == 8 * 20
    assert brats.summary.skipped == []
    free = {p.patient_id for p in summary.brats_patients if not p.tumour}
    slices = brats.datasets["train"].with_format(None)
    for patient, label in zip(slices["patient_id"], slices["tumour"], strict=True):
        assert not (patient in free and label)
    us = prepare_datasets(from_dict(DataConfig, summary.ultrasound_config), tmp_path / "cache")
    with open(out / "ultrasound" / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert us.summary.num_samples == len(rows) == summary.num_ultrasound_images
    assert us.label_names["diagnosis"] == ["healthy", "myopathy", "myelopathy", "polyneuropathy"]
    for row in rows:
        flags = [int(row[k]) for k in ("myopathy", "myelopathy", "polyneuropathy")]
        assert int(row["pathology"]) == int(any(flags))
        assert (row["diagnosis"] == "healthy") == (not any(flags))


def test_tumour_slices_differ_from_tumour_free_ones(demo, tmp_path: Path) -> None:
    """A tumour is a bright blob in FLAIR: the peak of the smoothed slice over its median separates the
    classes, and inside the lesion mask FLAIR is brighter than the rest of the brain."""
    _, summary = demo
    ds, _ = build_cache(from_dict(DataConfig, summary.brats_config), tmp_path / "cache")
    labels, peaks, ratios = [], [], []
    for row in ds:
        image = decode_image(row)[0]
        brain = image > 0
        peaks.append(gaussian_filter(image, 2)[brain].max() / np.median(image[brain]))
        labels.append(row["tumour"])
        lesion = decode_mask(row) > 0
        if lesion.sum() >= 10:
            ratios.append(image[lesion].mean() / image[brain & ~lesion].mean())
    assert 0.2 < np.mean(labels) < 0.8
    assert roc_auc_score(labels, peaks) > 0.8
    assert np.median(ratios) > 1.3


def test_ultrasound_patterns_are_in_their_masks(demo, tmp_path: Path) -> None:
    _, summary = demo
    ds, _ = build_cache(from_dict(DataConfig, summary.ultrasound_config), tmp_path / "cache")
    labels, means, inside_minus_outside = [], [], []
    for row in ds:
        image = np.asarray(row["image"], dtype=np.float64) / 255
        mask = decode_mask(row) > 0
        labels.append(row["pathology"])
        means.append(image.mean())
        if row["pathology"]:
            assert mask.any()
            if (~mask).any():
                inside_minus_outside.append(image[mask].mean() - image[~mask].mean())
        else:
            assert not mask.any()
    assert 0 < np.mean(labels) < 1
    assert np.mean(np.array(inside_minus_outside) > 0) > 0.85
    assert roc_auc_score(labels, means) > 0.6
