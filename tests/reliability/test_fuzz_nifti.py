"""Fuzz the NIfTI reader and the BraTS case loader with hypothesis, plus hand-written hostile files.

Files are real NIfTI-1 files written by nibabel, then damaged: random header fields (dimensions, data
type, bit depth, scaling, voxel offset, orientation codes and matrices, magic), truncation, flipped
bytes, gzip or not, absurd shapes and data types, NaN and inf, empty volumes. Every example must end
in a volume that passes the checks below, or in :class:`~mtl_hf.data.DataError`; never another
exception, a hang, or a label map read as something it is not.
"""

from __future__ import annotations

import gzip
import struct
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtl_hf.data import BratsConfig, DataError, decode_image
from mtl_hf.data.brats import BratsCase, SliceCounts, iter_case_slices, load_case
from mtl_hf.data.readers import read_volume

from .fuzzing import CI_EXAMPLES, SLOW_EXAMPLES, budget, tally, time_limit

HEADER = nib.Nifti1Header().structarr.dtype
FIELDS = [(name, HEADER.fields[name][1], HEADER.fields[name][0]) for name in HEADER.names]
DTYPES = [
    np.uint8,
    np.int8,
    np.int16,
    np.uint16,
    np.int32,
    np.uint32,
    np.int64,
    np.float32,
    np.float64,
    np.complex64,
]
NIFTI_CODES = [
    0,
    1,
    2,
    4,
    8,
    16,
    32,
    64,
    128,
    256,
    512,
    768,
    1024,
    1280,
    1536,
    1792,
    2048,
    2304,
    255,
    -1,
    32767,
]


def affines() -> st.SearchStrategy[np.ndarray]:
    diagonal = st.tuples(*[st.sampled_from([-2.0, -1.0, 0.5, 1.0, 3.0])] * 3).map(
        lambda d: np.diag([*d, 1.0])
    )
    permuted = st.permutations([0, 1, 2]).map(lambda p: np.vstack([np.eye(4)[[*p, 3]][:3], [0, 0, 0, 1]]))
    oblique = st.floats(-3, 3).map(
        lambda t: np.array(
            [[np.cos(t), -np.sin(t), 0, 0], [np.sin(t), np.cos(t), 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
        )
    )
    return st.one_of(diagonal, permuted, oblique)


@st.composite
def volumes(draw: st.DrawFn) -> np.ndarray:
    shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=5))
    dtype = draw(st.sampled_from(DTYPES))
    kind = draw(st.sampled_from(["random", "zeros", "labels", "extreme"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind == "zeros":
        data = np.zeros(shape)
    elif kind == "labels":
        data = rng.choice([0, 1, 2, 4, 3, 7, -1], size=shape)
    elif kind == "extreme":
        data = rng.choice([0.0, 1e30, -1e30, np.nan, np.inf, -np.inf, 0.5], size=shape)
    else:
        data = rng.normal(100, 50, size=shape)
    with np.errstate(all="ignore"):
        return data.astype(dtype)


@st.composite
def damaged_nifti(draw: st.DrawFn) -> tuple[bytes, bool]:
    """``(file bytes, gzip?)``: a real NIfTI-1 file, then zero to four damages."""
    voxels = draw(volumes())
    image = nib.Nifti1Image(voxels, draw(affines()), dtype=voxels.dtype)
    data = bytearray(image.to_bytes())
    header_damages = ["field", "dim", "datatype", "scaling", "orientation"]
    damages = sorted(
        draw(st.lists(st.sampled_from([*header_damages, "flip", "truncate", "append"]), max_size=4)),
        key=lambda d: d not in header_damages,  # header fields first, then the bytes are cut or flipped
    )
    for damage in damages:
        if damage == "field":
            _, offset, dtype = draw(st.sampled_from(FIELDS))
            data[offset : offset + dtype.itemsize] = draw(
                st.binary(min_size=dtype.itemsize, max_size=dtype.itemsize)
            )
        elif damage == "dim":
            index = draw(st.integers(0, 7))
            value = draw(st.sampled_from([-1, 0, 1, 2, 3, 4, 7, 8, 255, 4096, 32767]))
            struct.pack_into("<h", data, 40 + 2 * index, value)
        elif damage == "datatype":
            struct.pack_into("<h", data, 70, draw(st.sampled_from(NIFTI_CODES)))
            struct.pack_into("<h", data, 72, draw(st.sampled_from([0, 1, 8, 16, 32, 64, 128, 7, -8])))
        elif damage == "scaling":
            values = [0.0, 1.0, -1.0, 0.5, 2.0, 1e-30, 1e30, float("nan"), float("inf")]
            struct.pack_into("<ff", data, 112, draw(st.sampled_from(values)), draw(st.sampled_from(values)))
        elif damage == "orientation":  # singular, NaN, infinite or absurd sform / qform
            values = [0.0, float("nan"), float("inf"), 1e30, -1e-30, 1.0]
            struct.pack_into("<hh", data, 252, *draw(st.tuples(st.integers(-1, 5), st.integers(-1, 5))))
            struct.pack_into(
                "<12f", data, 280, *draw(st.lists(st.sampled_from(values), min_size=12, max_size=12))
            )
            struct.pack_into(
                "<3f", data, 256, *draw(st.lists(st.sampled_from(values), min_size=3, max_size=3))
            )
        elif damage == "flip" and data:
            position = draw(st.integers(0, len(data) - 1))
            data[position] ^= draw(st.integers(1, 255))
        elif damage == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        else:
            data += draw(st.binary(max_size=64))
    return bytes(data), draw(st.booleans())


def write(payload: tuple[bytes, bool], folder: Path, stem: str = "vol") -> Path:
    content, compressed = payload
    if compressed:
        path = folder / f"{stem}.nii.gz"
        path.write_bytes(gzip.compress(content, compresslevel=1))
    else:
        path = folder / f"{stem}.nii"
        path.write_bytes(content)
    return path


def check_volume(path: Path, integer: bool) -> str:
    """Read ``path``; the result must be a sound volume, or a DataError naming the file."""
    try:
        with time_limit():
            volume = read_volume(str(path), integer=integer)
    except DataError as exc:
        assert exc.path == str(path) and str(exc).startswith(f"{path}: ")
        return "refused"
    assert volume.ndim == 3 and min(volume.shape) >= 1
    if integer:
        assert volume.dtype == np.int32
        # never a silent truncation: what nibabel decodes (scaled) is exactly what we return
        image = nib.load(str(path))
        expected = np.asanyarray(nib.as_closest_canonical(image).dataobj).reshape(volume.shape)
        assert np.array_equal(expected, volume), "label map changed on reading"
    else:
        assert volume.dtype == np.float32 and np.isfinite(volume).all()
    return "accepted"


def nifti_property(payload: tuple[bytes, bool], integer: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        outcome = check_volume(write(payload, Path(folder)), integer)
    tally("NIfTI reader", outcome)


@budget(CI_EXAMPLES)
@given(payload=damaged_nifti(), integer=st.booleans())
def test_damaged_nifti_files_read_or_refused(payload: tuple[bytes, bool], integer: bool) -> None:
    nifti_property(payload, integer)


@pytest.mark.slow
@budget(SLOW_EXAMPLES, explore=True)
@given(payload=damaged_nifti(), integer=st.booleans())
def test_damaged_nifti_files_read_or_refused_long(payload: tuple[bytes, bool], integer: bool) -> None:
    nifti_property(payload, integer)


# -- whole BraTS cases: modality and segmentation files damaged independently ---------------------------
def case_property(flair: tuple[bytes, bool], seg: tuple[bytes, bool], config: BratsConfig) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        case = BratsCase("P1", str(folder), {"flair": str(write(flair, folder, "P1_flair"))})
        case.segmentation = str(write(seg, folder, "P1_seg"))
        try:
            with time_limit():
                volumes = load_case(case, config)
                rows = list(iter_case_slices(volumes, case, config, str(folder), SliceCounts()))
        except DataError:
            tally("BraTS case loader", "refused")
            return
        # the labels are what the segmentation says, slice by slice
        segmentation = read_volume(case.segmentation, integer=True)
        axis = {"sagittal": 0, "coronal": 1, "axial": 2}[config.axis]
        for row in rows:
            seg_slice = np.take(segmentation, row["slice_index"], axis=axis)
            tumour = int((seg_slice != 0).sum())
            assert row["tumour_pixels"] == tumour and row["tumour"] == int(tumour >= config.min_tumour_pixels)
            assert np.isfinite(decode_image(row)).all()
        tally("BraTS case loader", "accepted")


@st.composite
def segmentations(draw: st.DrawFn) -> tuple[bytes, bool]:
    """Mostly sound label maps of the flair's shape, sometimes damaged like any file."""
    labels = np.random.default_rng(draw(st.integers(0, 999))).choice([0, 0, 0, 1, 2, 4], size=(4, 5, 3))
    dtype = draw(st.sampled_from([np.uint8, np.int16, np.float32, np.float64]))
    image = nib.Nifti1Image(labels.astype(dtype), np.eye(4))
    if draw(st.booleans()):
        image.header.set_slope_inter(
            draw(st.sampled_from([1.0, 2.0, 0.5])), draw(st.sampled_from([0.0, 1.0]))
        )
    data = image.to_bytes()
    return draw(damaged_nifti()) if draw(st.integers(0, 3)) == 0 else (data, draw(st.booleans()))


@st.composite
def flairs(draw: st.DrawFn) -> tuple[bytes, bool]:
    if draw(st.integers(0, 2)) == 0:
        return draw(damaged_nifti())
    data = np.random.default_rng(draw(st.integers(0, 999))).normal(300, 100, (4, 5, 3))
    if draw(st.booleans()):
        data[...] = draw(st.sampled_from([0.0, 5.0]))  # empty or constant brain
    return nib.Nifti1Image(data.astype(np.float32), np.eye(4)).to_bytes(), draw(st.booleans())


CONFIGS = st.builds(
    BratsConfig,
    axis=st.sampled_from(["axial", "coronal", "sagittal"]),
    min_tumour_pixels=st.integers(1, 5),
    min_brain_fraction=st.sampled_from([0.0, 0.05, 0.9]),
)


@budget(CI_EXAMPLES // 2)
@given(flair=flairs(), seg=segmentations(), config=CONFIGS)
def test_damaged_brats_cases_load_with_true_labels_or_are_refused(
    flair: tuple[bytes, bool], seg: tuple[bytes, bool], config: BratsConfig
) -> None:
    case_property(flair, seg, config)


@pytest.mark.slow
@budget(SLOW_EXAMPLES // 2, explore=True)
@given(flair=flairs(), seg=segmentations(), config=CONFIGS)
def test_damaged_brats_cases_load_with_true_labels_or_are_refused_long(
    flair: tuple[bytes, bool], seg: tuple[bytes, bool], config: BratsConfig
) -> None:
    case_property(flair, seg, config)


# -- hand-written hostile files -------------------------------------------------------------------------
def hostile_files() -> dict[str, Any]:
    good = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)).to_bytes()

    def with_dims(*dims: int) -> bytes:
        data = bytearray(good)
        struct.pack_into("<8h", data, 40, *dims)
        return bytes(data)

    bomb = nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4))
    bomb_bytes = bytearray(bomb.to_bytes())
    struct.pack_into("<8h", bomb_bytes, 40, 3, 32767, 32767, 32767, 1, 1, 1, 1)
    return {
        "empty file": (b"", False),
        "not NIfTI": (b"hello world" * 50, False),
        "header only": (good[:348], False),
        "half the voxels": (good[: len(good) - 100], False),
        "gzip of garbage": (b"\x1f\x8b" + b"\x00" * 30, False),
        "negative dimension": (with_dims(3, 4, -4, 4, 1, 1, 1, 1), False),
        "zero dimension": (with_dims(3, 4, 0, 4, 1, 1, 1, 1), False),
        "seven dimensions": (with_dims(7, 4, 4, 4, 2, 2, 2, 2), False),
        "2-D image": (with_dims(2, 8, 8, 1, 1, 1, 1, 1), False),
        "32767^3 voxels declared (zip bomb shape)": (bytes(bomb_bytes), True),
    }


@pytest.mark.parametrize("name", list(hostile_files()))
def test_hostile_nifti_files_are_refused(tmp_path: Path, name: str, figures: Counter[str]) -> None:
    payload = hostile_files()[name]
    path = write(payload, tmp_path)
    with time_limit(), pytest.raises(DataError) as info:
        read_volume(str(path))
    assert info.value.path == str(path)
    figures["hand-written bad inputs refused"] += 1
