"""Readers: real PNG/JPEG files written by Pillow, NIfTI volumes written by nibabel, DICOM by pydicom."""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from mtl_hf.data import DataError
from mtl_hf.data.images import read_image_frames
from mtl_hf.inference import expand_inputs, read_dicom, read_image, read_inputs, read_nifti_slices


def test_png_and_jpeg_keep_their_bit_depth(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    rgb = rng.integers(0, 256, (20, 10, 3), dtype=np.uint8)
    deep = rng.integers(0, 65536, (16, 12), dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(deep).save(tmp_path / "deep.png")
    yy, xx = np.mgrid[0:20, 0:10]
    smooth = np.stack([yy * 10, xx * 20, 100 + yy * 0], axis=-1).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "smooth.jpg", quality=95)
    np.testing.assert_array_equal(read_image(tmp_path / "grey.png"), grey)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), rgb)
    loaded = read_image(tmp_path / "deep.png")
    assert np.issubdtype(loaded.dtype, np.integer) and loaded.dtype != np.uint8
    np.testing.assert_array_equal(loaded, deep)
    jpeg = read_image(tmp_path / "smooth.jpg")
    assert jpeg.shape == (20, 10, 3) and jpeg.dtype == np.uint8
    assert np.abs(jpeg.astype(int) - smooth).mean() < 4  # lossy, but the same picture


def test_palette_png_becomes_rgb(tmp_path: Path) -> None:
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(grey).convert("P").save(tmp_path / "pal.png")
    out = read_image(tmp_path / "pal.png")
    assert out.shape == (8, 8, 3)
    np.testing.assert_array_equal(
        out[..., 0], np.asarray(Image.open(tmp_path / "pal.png").convert("RGB"))[..., 0]
    )


def _volume() -> np.ndarray:
    rng = np.random.default_rng(1)
    data = rng.integers(1, 1000, (12, 10, 5)).astype(np.int16)
    data[:, :, 0] = 0  # an empty (background) slice
    return data


@pytest.mark.parametrize("intensity", ["volume", "slice"])
def test_nifti_slices_follow_the_documented_orientation(tmp_path: Path, intensity: str) -> None:
    data = _volume()
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii.gz")
    slices = dict(read_nifti_slices(tmp_path / "v.nii.gz", intensity=intensity))  # type: ignore[arg-type]
    assert sorted(slices) == [0, 1, 2, 3, 4]
    lo, hi = float(data.min()), float(data.max())
    for k in range(1, 5):
        expected = np.rot90(data[:, :, k].astype(np.float32))  # anterior (+y) up, left (-x) on the left
        if intensity == "volume":
            expected = (expected - lo) / (hi - lo)
        else:
            expected = (expected - expected.min()) / (expected.max() - expected.min())
        np.testing.assert_allclose(slices[k], expected, rtol=1e-6)
        assert slices[k].shape == (10, 12)


def test_nifti_brain_intensity_matches_the_training_data_normalisation(tmp_path: Path) -> None:
    data = _volume().astype(np.float32)
    data[0, 0, 1] = 1e5  # a hot voxel, clipped at the 99.5th percentile
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii.gz")
    slices = dict(read_nifti_slices(tmp_path / "v.nii.gz"))
    brain = data[data != 0]
    lo, hi = np.percentile(brain, [0.5, 99.5])
    expected = (np.clip(data, lo, hi) - lo) / (hi - lo)
    expected[data == 0] = 0
    for k in range(5):
        np.testing.assert_allclose(slices[k], np.rot90(expected[:, :, k]), rtol=1e-5, atol=1e-6)


def test_nifti_reorientation_undoes_a_flipped_affine(tmp_path: Path) -> None:
    data = _volume()
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "ras.nii.gz")
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])
    flipped[0, 3] = data.shape[0] - 1  # same voxel positions in world space, x axis stored reversed
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data[::-1]), flipped), tmp_path / "las.nii.gz")
    a = dict(read_nifti_slices(tmp_path / "ras.nii.gz"))
    b = dict(read_nifti_slices(tmp_path / "las.nii.gz"))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_nifti_axis_and_empty_slices(tmp_path: Path) -> None:
    data = _volume()
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii")
    items = list(read_inputs([tmp_path / "v.nii"], intensity="volume"))
    assert [i.index for i in items] == [1, 2, 3, 4]  # slice 0 is background only
    assert all(i.in_volume for i in items)
    sagittal = list(read_inputs([tmp_path / "v.nii"], slice_axis=0, intensity="volume"))
    assert len(sagittal) == 12 and sagittal[0].image.shape == (5, 10)
    np.testing.assert_allclose(
        sagittal[3].image, np.rot90(data[3].astype(np.float32)) / data.max(), rtol=1e-6
    )


def test_4d_nifti_is_refused(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.ones((4, 4, 3, 2), np.int16), np.eye(4)), tmp_path / "t.nii.gz")
    with pytest.raises(ValueError, match=r"t\.nii\.gz: expected a 3-D volume"):
        list(read_nifti_slices(tmp_path / "t.nii.gz"))


def test_dicom_single_and_multi_frame(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    us = get_testdata_file("US1_UNCR.dcm")  # real GE ultrasound, RGB uint8
    frames = read_dicom(us)
    assert frames.shape == (1, 480, 640, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[0], pydicom.dcmread(us).pixel_array)

    # A MONOCHROME1 cine loop of 3 frames, 12-bit, written by pydicom.
    pixels = np.stack([np.full((6, 8), v, np.uint16) for v in (100, 200, 4000)])
    pixels[:, 0, 0] = 0
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = (
        ds.file_meta.MediaStorageSOPClassUID,
        ds.file_meta.MediaStorageSOPInstanceUID,
    )
    ds.Rows, ds.Columns, ds.NumberOfFrames = 6, 8, 3
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    path = tmp_path / "cine"  # no suffix: recognised by the DICOM preamble
    ds.save_as(path, enforce_file_format=True)
    out = read_dicom(path)
    inverted = 4000.0 - pixels  # MONOCHROME1: high values are dark
    assert out.dtype == np.uint16  # as the training cache stores it: scaled to 16 bits over all frames
    np.testing.assert_array_equal(out, np.round(inverted / 4000.0 * 65535).astype(np.uint16))
    cached = read_image_frames(str(path))  # the training reader: PNG bytes of the same frames
    for frame, (index, data, _size) in zip(out, cached, strict=True):
        assert index >= 0
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), frame)
    items = list(read_inputs([tmp_path]))
    assert [(Path(i.source).name, i.index) for i in items] == [("cine", 0), ("cine", 1), ("cine", 2)]


def test_expand_inputs_errors_name_the_path(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"notes\.txt: unsupported file type"):
        expand_inputs([tmp_path / "notes.txt"])
    with pytest.raises(DataError, match="missing.png: no such file"):
        expand_inputs([tmp_path / "missing.png"])
    with pytest.raises(ValueError, match="no supported files"):
        expand_inputs([tmp_path])
