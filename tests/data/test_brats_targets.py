"""Targets derived from BraTS segmentations, checked against hand counts on NIfTI volumes written with
nibabel: sub-region presence (either naming convention's labels) and tumour area over the brain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mtl_hf.data import build_cache, find_brats_cases, label_statistics
from mtl_hf.data.cache import compute_fingerprint

from .files import brats_config, write_case

SHAPE = (10, 9, 6)


def volumes(enhancing: int) -> dict[str, np.ndarray]:
    """A brain box with hand-placed labels: axial slice 2 holds 6 oedema pixels; slice 3 holds 4 oedema,
    2 necrotic and 1 enhancing pixels; slice 4 only 1 enhancing pixel; brain slices are 1..4."""
    brain = np.zeros(SHAPE, dtype=bool)
    brain[1:9, 1:8, 1:5] = True  # 8 x 7 = 56 brain pixels in each axial slice 1..4
    rng = np.random.default_rng(0)
    flair = np.where(brain, rng.uniform(100, 900, SHAPE), 0).astype(np.int16)
    seg = np.zeros(SHAPE, dtype=np.uint8)
    seg[2:4, 2:5, 2] = 2  # 6
    seg[2:4, 2:4, 3] = 2  # 4
    seg[5, 2:4, 3] = 1  # 2
    seg[6, 6, 3] = enhancing  # 1
    seg[4, 4, 4] = enhancing  # 1
    return {"flair": flair, "seg": seg}


@pytest.mark.parametrize(("naming", "enhancing"), [("2021", 4), ("2023", 3)])
def test_subregions_and_area_match_hand_counts(tmp_path: Path, naming: str, enhancing: int) -> None:
    vols = volumes(enhancing)
    pid = "BraTS2021_00007" if naming == "2021" else "BraTS-GLI-00007-000"
    write_case(tmp_path / "p", pid, vols, naming=naming)
    assert find_brats_cases(tmp_path)[0].naming == {"2021": "2020", "2023": "2023"}[naming]
    config = brats_config(tmp_path, targets=["tumour", "subregions", "tumour_area"])
    ds, _ = build_cache(config, tmp_path / "cache")
    assert ds.features["subregions"].feature.names == ["necrotic_core", "oedema", "enhancing"]
    rows = {r["slice_index"]: r for r in ds}
    assert sorted(rows) == [1, 2, 3, 4]
    # Hand counts: slice -> (sub-regions present, tumour pixels); brain = 56 pixels per slice.
    expected = {1: ([], 0), 2: ([1], 6), 3: ([0, 1, 2], 7), 4: ([2], 1)}
    for k, (present, tumour) in expected.items():
        assert rows[k]["subregions"] == present, k
        assert rows[k]["tumour_area"] == pytest.approx([tumour / 56]), k
        assert rows[k]["tumour"] == int(tumour > 0)
    stats = label_statistics(ds)["all"]
    assert stats["subregions"].counts == [1, 2, 2]
    assert stats["tumour_area"].summary["max"] == pytest.approx([7 / 56])


def test_subregion_labels_override_and_min_pixels(tmp_path: Path) -> None:
    write_case(tmp_path / "p", "BraTS2021_00008", volumes(4), naming="2021")
    config = brats_config(
        tmp_path,
        targets=["subregions"],
        min_tumour_pixels=2,
        subregion_labels={"core": [1, 4], "oedema": [2]},
    )
    ds, _ = build_cache(config, tmp_path / "cache")
    assert ds.features["subregions"].feature.names == ["core", "oedema"]
    rows = {r["slice_index"]: r for r in ds}
    # At least 2 pixels: slice 3 has 3 core pixels (2 necrotic + 1 enhancing) and 4 oedema; slice 4 one.
    assert [rows[k]["subregions"] for k in (1, 2, 3, 4)] == [[], [1], [0, 1], []]
    assert "tumour_area" not in ds.column_names


def test_the_cache_key_changes_with_the_targets(tmp_path: Path) -> None:
    write_case(tmp_path / "p", "BraTS2021_00009", volumes(4), naming="2021")
    inputs = sorted(str(p) for p in (tmp_path / "p").iterdir())
    keys = {
        tuple(targets): compute_fingerprint(brats_config(tmp_path, targets=targets), inputs)
        for targets in (["tumour"], ["tumour", "subregions"], ["tumour", "tumour_area"])
    }
    assert len(set(keys.values())) == 3
    plain, _ = build_cache(brats_config(tmp_path), tmp_path / "cache")
    richer, _ = build_cache(brats_config(tmp_path, targets=["tumour_area"]), tmp_path / "cache")
    assert "tumour_area" not in plain.column_names and "tumour_area" in richer.column_names


def test_bad_target_options_are_named() -> None:
    with pytest.raises(
        ValueError, match="targets: 'area' is not a BraTS target; targets are tumour, subregions"
    ):
        brats_config(Path("."), targets=["area"])
    with pytest.raises(ValueError, match=r"subregion_labels.core: must be non-zero values"):
        brats_config(Path("."), subregion_labels={"core": [0]})
