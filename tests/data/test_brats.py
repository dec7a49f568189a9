"""Reading BraTS folders: naming conventions, orientation, slice labels and normalisation, checked by hand."""

from __future__ import annotations

import zlib
from pathlib import Path

import lz4.block
import nibabel as nib
import numpy as np
import pytest

from mtl_hf.data import build_cache, decode_image, decode_mask, find_brats_cases, normalize_volume

from .files import SHAPE, brats_config, make_volumes, write_case

SHAPE_ROT = (SHAPE[1], SHAPE[0])  # np.rot90 of an axial slice


def rows_by_id(dataset) -> dict[str, dict]:
    return {r["sample_id"]: r for r in dataset}


def test_both_namings_and_extensions_are_found(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    write_case(tmp_path / "a", "BraTS2021_00001", make_volumes(rng), naming="2021", ext=".nii.gz")
    write_case(tmp_path / "b", "BraTS-GLI-00002-000", make_volumes(rng), naming="2023", ext=".nii")
    cases = find_brats_cases(tmp_path)
    assert [c.patient_id for c in cases] == ["BraTS-GLI-00002-000", "BraTS2021_00001"]
    for case in cases:
        assert sorted(case.modalities) == ["flair", "t1", "t1ce", "t2"]
        assert case.segmentation is not None
    assert cases[0].modalities["flair"].endswith("BraTS-GLI-00002-000-t2f.nii")
    assert cases[1].modalities["t1ce"].endswith("BraTS2021_00001_t1ce.nii.gz")


def test_slice_labels_match_hand_counts(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    vols = make_volumes(rng)
    write_case(tmp_path / "p", "P_001", vols)
    cache = tmp_path / "cache"
    seg = vols["seg"]
    # Any non-zero label, at least 3 pixels.
    ds, summary = build_cache(brats_config(tmp_path, min_tumour_pixels=3), cache)
    rows = rows_by_id(ds)
    kept = [k for k in range(seg.shape[2]) if 1 <= k <= seg.shape[2] - 2]  # the brain box
    assert sorted(rows) == [f"P_001/{k:03d}" for k in kept]
    assert summary.slices_dropped == 2
    for k in kept:
        row = rows[f"P_001/{k:03d}"]
        count = int((seg[:, :, k] != 0).sum())
        assert row["tumour_pixels"] == count
        assert row["tumour"] == int(count >= 3)
        assert row["slice_index"] == k and row["patient_id"] == "P_001"
        assert row["source"] == "p/P_001_flair.nii.gz"
        np.testing.assert_array_equal(decode_mask(row), np.rot90(seg[:, :, k]))
    assert {r["tumour"] for r in rows.values()} == {0, 1}
    # Only the core labels 1 and 4 count: slice 3 has 2 core pixels (labels 1 and 4), slice 2 none.
    ds2, _ = build_cache(brats_config(tmp_path, tumour_labels=[1, 4], min_tumour_pixels=1), cache)
    rows2 = rows_by_id(ds2)
    for k in kept:
        core = int(np.isin(seg[:, :, k], [1, 4]).sum())
        assert rows2[f"P_001/{k:03d}"]["tumour_pixels"] == core
        assert rows2[f"P_001/{k:03d}"]["tumour"] == int(core >= 1)
    assert rows2["P_001/003"]["tumour_pixels"] == 2 and rows2["P_001/002"]["tumour"] == 0


def test_min_brain_fraction_drops_slices(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vols = make_volumes(rng)
    for name in ("flair", "t1", "t1ce", "t2"):
        vols[name][:, :, 1] = 0
        vols[name][2, 2, 1] = 50  # one brain voxel of 120: fraction 0.0083
    write_case(tmp_path / "p", "P_001", vols)
    ds, summary = build_cache(brats_config(tmp_path, min_brain_fraction=0.01), tmp_path / "c")
    assert "P_001/001" not in rows_by_id(ds) and summary.slices_dropped == 3
    ds, summary = build_cache(brats_config(tmp_path, min_brain_fraction=0.005), tmp_path / "c")
    assert "P_001/001" in rows_by_id(ds) and summary.slices_dropped == 2


@pytest.mark.parametrize("method", ["minmax", "zscore"])
def test_normalisation_matches_numpy(tmp_path: Path, method: str) -> None:
    rng = np.random.default_rng(4)
    vols = make_volumes(rng)
    write_case(tmp_path / "p", "P_001", vols)
    config = brats_config(
        tmp_path,
        modalities=["t2", "flair", "t1ce"],
        normalization={"method": method, "percentiles": [2, 98]},
        storage_dtype="float32",
    )
    ds, _ = build_cache(config, tmp_path / "c")
    brain = (vols["t2"] != 0) | (vols["flair"] != 0) | (vols["t1ce"] != 0)
    expected = []
    for name in ("t2", "flair", "t1ce"):
        v = vols[name].astype(np.float64)
        lo, hi = np.percentile(v[brain], [2, 98])
        c = np.clip(v, lo, hi)
        e = (c - lo) / (hi - lo) if method == "minmax" else (c - c[brain].mean()) / c[brain].std()
        expected.append(np.where(brain, e, 0.0))
    row = rows_by_id(ds)["P_001/004"]
    image = decode_image(row)
    assert image.shape == (3, SHAPE_ROT[0], SHAPE_ROT[1]) and image.dtype == np.float32
    for c in range(3):
        np.testing.assert_allclose(image[c], np.rot90(expected[c][:, :, 4]), rtol=1e-5, atol=1e-5)
    # The function itself, on an arbitrary array.
    v = rng.normal(size=(5, 6, 7)) * 10 + 3
    mask = rng.random((5, 6, 7)) > 0.3
    out = normalize_volume(v, mask, "zscore", (0, 100))
    np.testing.assert_allclose(out[mask].mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(out[mask].std(), 1.0, atol=1e-5)
    assert (out[~mask] == 0).all()


def test_orientation_is_ras_whatever_the_voxel_order(tmp_path: Path) -> None:
    """An LPS-stored volume (as BraTS files are) gives the same slices as nibabel's RAS+ reorientation."""
    rng = np.random.default_rng(5)
    vols = make_volumes(rng)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    paths = write_case(tmp_path / "p", "P_001", vols, affine=affine)
    ds, _ = build_cache(
        brats_config(tmp_path, normalization={"method": "none"}, storage_dtype="float32"), tmp_path / "c"
    )
    canonical = np.asarray(nib.as_closest_canonical(nib.load(paths["flair"])).dataobj)
    for k, row in ((k, rows_by_id(ds)[f"P_001/{k:03d}"]) for k in (2, 5)):
        np.testing.assert_array_equal(decode_image(row)[0], np.rot90(canonical[:, :, k]).astype(np.float32))


@pytest.mark.parametrize(("axis", "index"), [("sagittal", 0), ("coronal", 1)])
def test_other_planes(tmp_path: Path, axis: str, index: int) -> None:
    rng = np.random.default_rng(6)
    vols = make_volumes(rng)
    write_case(tmp_path / "p", "P_001", vols)
    config = brats_config(
        tmp_path, axis=axis, normalization={"method": "none"}, min_brain_fraction=0.0, storage_dtype="float32"
    )
    ds, _ = build_cache(config, tmp_path / "c")
    assert len(ds) == SHAPE[index]
    row = rows_by_id(ds)["P_001/004"]
    expected = np.rot90(np.take(vols["flair"], 4, axis=index)).astype(np.float32)
    np.testing.assert_array_equal(decode_image(row)[0], expected)


def test_modality_aliases_and_single_channel(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    vols = make_volumes(rng)
    write_case(tmp_path / "p", "BraTS-GLI-00001-000", vols, naming="2023")
    config = brats_config(
        tmp_path, modalities=["t1"], normalization={"method": "none"}, storage_dtype="float32"
    )
    ds, _ = build_cache(config, tmp_path / "c")
    row = rows_by_id(ds)["BraTS-GLI-00001-000/003"]
    assert row["source"] == "p/BraTS-GLI-00001-000-t1n.nii.gz"
    np.testing.assert_array_equal(decode_image(row)[0], np.rot90(vols["t1"][:, :, 3]).astype(np.float32))


@pytest.mark.parametrize("compression", ["lz4", "zlib", "none"])
def test_compact_storage_is_within_half_a_step(tmp_path: Path, compression: str) -> None:
    rng = np.random.default_rng(8)
    write_case(tmp_path / "p", "P_001", make_volumes(rng))
    exact = rows_by_id(build_cache(brats_config(tmp_path, storage_dtype="float32"), tmp_path / "c")[0])
    for dtype, steps in (("uint8", 255), ("uint16", 65535), ("float16", None)):
        config = brats_config(tmp_path, storage_dtype=dtype, compression=compression)
        stored = rows_by_id(build_cache(config, tmp_path / "c")[0])
        for key, row in stored.items():
            a, b = decode_image(exact[key]), decode_image(row)
            assert b.dtype == (np.float16 if dtype == "float16" else np.float32)
            if steps is None:
                np.testing.assert_allclose(b.astype(np.float32), a, atol=1e-3)
                continue
            for c in range(a.shape[0]):
                step = (a[c].max() - a[c].min()) / steps  # each channel of each slice has its own scale
                assert np.abs(b[c] - a[c]).max() <= step / 2 + 1e-6
                assert row["image_scale"][c] == pytest.approx(step) and row["image_offset"][c] == a[c].min()
            np.testing.assert_array_equal(decode_mask(row), decode_mask(exact[key]))
            if compression == "lz4":
                data = lz4.block.decompress(row["image"], uncompressed_size=a.size * np.dtype(dtype).itemsize)
            else:
                data = zlib.decompress(row["image"]) if compression == "zlib" else row["image"]
            raw = np.frombuffer(data, dtype)
            assert raw.size == a.size and row["image_crc32"] == zlib.crc32(row["image"])
            assert row["image_encoding"] == compression


def test_resized_at_build_time_as_the_transform_resizes(tmp_path: Path) -> None:
    """With data.image_size, slices are cached at that size, bilinear with antialiasing like the image
    processor; masks by nearest neighbour like the transform."""
    import torch

    from mtl_hf import MTLImageProcessor
    from mtl_hf.data.transforms import resize_mask

    rng = np.random.default_rng(9)
    write_case(tmp_path / "p", "P_001", make_volumes(rng))
    full = rows_by_id(
        build_cache(brats_config(tmp_path, storage_dtype="float32", resize=False), tmp_path / "c")[0]
    )
    config = brats_config(tmp_path, storage_dtype="float32")
    config.image_size = 16
    small = rows_by_id(build_cache(config, tmp_path / "c")[0])
    processor = MTLImageProcessor(size=16, num_channels=1, do_normalize=False)
    for key, row in small.items():
        image = decode_image(full[key])
        expected = processor(image[0], do_rescale=False)["pixel_values"][0]
        torch.testing.assert_close(torch.from_numpy(decode_image(row)), expected, atol=1e-6, rtol=0)
        np.testing.assert_array_equal(decode_mask(row), resize_mask(decode_mask(full[key]), (16, 16)).numpy())
