"""Every kind of bad input: a DataError naming the file, or with skip_bad a warning and a counted skip."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mtl_hf.data import DataConfig, DataError, DataWarning, build_cache
from mtl_hf.options import from_dict

from .files import brats_config, make_volumes, sparse_nifti, write_case, write_csv, write_png

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
    with pytest.raises(OptionsError, match=r"data\.brats: modalities: give at least one"):
        from_dict(DataConfig, {"kind": "brats", "root": ".", "brats": {"modalities": []}}, path="data")
    with pytest.raises(OptionsError, match=r"data\.brats: modalities: duplicates"):
        from_dict(
            DataConfig, {"kind": "brats", "root": ".", "brats": {"modalities": ["t1", "t1n"]}}, path="data"
        )
    with pytest.raises(OptionsError, match="unknown modality 'dwi'"):
        from_dict(DataConfig, {"kind": "brats", "root": ".", "brats": {"modalities": ["dwi"]}})
    with pytest.raises(OptionsError, match="needs at least one target"):
        from_dict(DataConfig, {"kind": "images", "root": "."})


# -- manifest rows that cannot even be looked up -------------------------------------------------
def link_loop(root: Path) -> str:
    (root / "loop_a.png").symlink_to(root / "loop_b.png")
    (root / "loop_b.png").symlink_to(root / "loop_a.png")
    return "loop_a.png"


UNUSABLE_PATHS: dict[str, tuple[Callable[[Path], str], str]] = {
    "symbolic-link loop": (link_loop, "cannot resolve image path"),
    "NUL byte": (lambda root: "img\x00.png", "contains a NUL byte"),
    "name over 255 bytes": (lambda root: "x" * 300 + ".png", "a name of 304 bytes"),
    "path over 4095 bytes": (lambda root: "/".join(["d" * 200] * 25) + ".png", "longer than 4095 bytes"),
}


@pytest.mark.parametrize("case", list(UNUSABLE_PATHS))
@pytest.mark.parametrize("manifest", ["m.csv", "m.jsonl"])
def test_unusable_manifest_paths_are_data_errors(tmp_path: Path, case: str, manifest: str) -> None:
    make, reason = UNUSABLE_PATHS[case]
    rows = small_image_set(tmp_path)
    rows.append({"path": make(tmp_path), "patient_id": "p9", "diagnosis": "healthy"})
    if manifest.endswith(".csv"):
        write_csv(tmp_path / manifest, rows)
    else:
        import json

        (tmp_path / manifest).write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=reason):
        build_cache(images_config(tmp_path, manifest), tmp_path / "cache")
    with pytest.warns(DataWarning, match=reason):
        ds, summary = build_cache(images_config(tmp_path, manifest, skip_bad=True), tmp_path / "cache")
    assert len(summary.skipped) == 1 and len(ds) == 4
    assert "row 5" in summary.skipped[0].path or "row 5" in summary.skipped[0].reason


# -- resource bombs in training --------------------------------------------------------------------
def test_a_case_over_the_memory_bound_is_refused_by_name(brats_root: Path, tmp_path: Path) -> None:
    from mtl_hf.data.readers import MAX_VOLUME_BYTES

    folder = brats_root / BAD_ID
    folder.mkdir()
    for suffix in ("flair", "t1", "t1ce", "seg"):  # each 800³ volume passes the per-file bound alone
        sparse_nifti(folder / f"{BAD_ID}_{suffix}.nii", (800, 800, 800))
    assert MAX_VOLUME_BYTES >= 800**3 * 8
    config = brats_config(brats_root, modalities=["flair", "t1", "t1ce"])
    with pytest.raises(
        DataError, match=rf"patient {BAD_ID} .*needs .* GiB, over the limit of 8.0 GiB"
    ) as info:
        build_cache(config, tmp_path / "cache")
    assert info.value.path == str(folder)
    with pytest.warns(DataWarning, match="over the limit of 8.0 GiB"):
        ds, summary = build_cache(
            brats_config(brats_root, modalities=["flair", "t1", "t1ce"], skip_bad=True), tmp_path / "cache"
        )
    assert [s.path for s in summary.skipped] == [str(folder)] and BAD_ID not in set(ds["patient_id"])


def deflated_dicom(path: Path, rows: int, columns: int, frames: int, padding: int = 0) -> Path:
    """A real DICOM file in the deflated transfer syntax holding ``frames`` x ``rows`` x ``columns``
    16-bit zero pixels (then ``padding`` zero bytes of trailing padding), a few hundred KB on disk. pydicom writes the file meta and the data set's
    elements; the zeros are deflated here in 16 MiB pieces cut by full flushes (each piece's
    compressed bytes are then the same, so one is compressed and repeated)."""
    import io
    import struct
    import zlib

    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    meta = DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    write_file_meta_info(meta, ds.file_meta)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    size = rows * columns * frames * 2
    pixel_header = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, size)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    piece = 1 << 24
    block = b""

    def deflated(data: bytes) -> bytes:
        return deflater.compress(data) + deflater.flush(zlib.Z_FULL_FLUSH)

    def zeros(n: int) -> bytes:
        nonlocal block
        full, rest = divmod(n, piece)
        if full and not block:
            block = deflated(bytes(piece))
        return block * full + deflated(bytes(rest))

    out = io.BytesIO()
    out.write(deflated(body.getvalue() + pixel_header) + zeros(size))
    if padding:  # (FFFC,FFFC) Data Set Trailing Padding, OB
        out.write(deflated(struct.pack("<HH2sHI", 0xFFFC, 0xFFFC, b"OB", 0, padding)) + zeros(padding))
    out.write(deflater.flush())
    path.write_bytes(bytes(128) + b"DICM" + meta.getvalue() + out.getvalue())
    return path


def test_the_deflated_dicom_helper_writes_what_pydicom_reads(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    ds = pydicom.dcmread(deflated_dicom(tmp_path / "small.dcm", 2048, 2048, 2))
    assert (ds.Rows, ds.Columns, ds.NumberOfFrames) == (2048, 2048, 2)
    assert ds.pixel_array.shape == (2, 2048, 2048) and not ds.pixel_array.any()


def test_a_deflated_dicom_bomb_is_refused_by_name(tmp_path: Path) -> None:
    rows = small_image_set(tmp_path)
    bomb = deflated_dicom(tmp_path / "bomb.dcm", 4096, 4096, 16)  # 512 MiB of pixels
    assert bomb.stat().st_size < 2**20
    rows.append({"path": "bomb.dcm", "patient_id": "p9", "diagnosis": "healthy"})
    write_csv(tmp_path / "m.csv", rows)
    with pytest.raises(DataError, match=r"16 x 4096 x 4096 needs 268,435,456 pixels, over the limit") as info:
        build_cache(images_config(tmp_path, "m.csv"), tmp_path / "cache")
    assert info.value.path == str(bomb)
    with pytest.warns(DataWarning, match="bomb.dcm"):
        ds, summary = build_cache(images_config(tmp_path, "m.csv", skip_bad=True), tmp_path / "cache")
    assert [s.path for s in summary.skipped] == [str(bomb)] and len(ds) == 4


def test_a_deflated_dicom_inflating_past_the_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mtl_hf.data.readers import dicom

    monkeypatch.setattr(dicom, "MAX_DICOM_BYTES", 64 * 2**20)  # the 1 GiB limit, scaled down
    path = deflated_dicom(
        tmp_path / "padded.dcm", 64, 64, 1, padding=96 * 2**20
    )  # small pixels, 96 MiB after
    with pytest.raises(DataError, match=r"the inflated DICOM data set needs .* over the limit of 64.0 MiB"):
        dicom.read_dicom(path)
    monkeypatch.setattr(dicom, "MAX_DICOM_BYTES", 128 * 2**20)
    assert [f.shape for f in dicom.read_dicom(path)] == [(64, 64)]


@pytest.mark.parametrize(
    ("dtype", "storage", "method"),
    [(np.int16, "float32", "minmax"), (np.float64, "float16", "zscore"), (np.uint8, "float32", "zscore")],
)
def test_the_case_memory_estimate_bounds_the_measured_peak(
    tmp_path: Path, dtype: type, storage: str, method: str
) -> None:
    """The bound is checked against an estimate; the estimate must hold the real peak (numpy's
    allocations as tracemalloc sees them) without overstating it more than twice."""
    import tracemalloc

    from mtl_hf.data.brats import BratsCase, case_peak_bytes, find_brats_cases, load_case
    from mtl_hf.data.readers import read_header

    rng = np.random.default_rng(0)
    volumes = make_volumes(rng, shape=(96, 80, 48))
    for name in ("flair", "t1", "t1ce"):
        volumes[name] = volumes[name].astype(dtype)
    write_case(tmp_path / "p", "BraTS2021_00001", volumes)
    (case,) = find_brats_cases(tmp_path)
    assert isinstance(case, BratsCase)
    config = brats_config(
        tmp_path, modalities=["flair", "t1", "t1ce"], storage_dtype=storage, normalization={"method": method}
    ).brats
    headers = [read_header(case.modalities[m]) for m in ("flair", "t1", "t1ce")]
    estimate = case_peak_bytes(read_header(case.segmentation), headers, np.dtype(storage).itemsize)
    tracemalloc.start()
    try:
        loaded = load_case(case, config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert loaded.images.shape == (3, 96, 80, 48)
    assert peak <= estimate <= 2 * peak, (peak, estimate)


# -- channels the backbone does not take -----------------------------------------------------------
def channel_model_and_config(tmp_path: Path, data: dict, num_channels: int, task: str) -> tuple[Any, Any]:
    """A tiny model whose backbone takes ``num_channels`` and a run configuration reading ``data``."""
    from mtl_hf import MTLConfig, MTLModel
    from mtl_hf.training.config import RunConfig
    from tests.conftest import tiny_backbone

    backbone = tiny_backbone(image_size=32, patch_size=8, num_channels=num_channels)
    tasks = {task: {"type": "binary_classification"}}
    raw = {
        "output_dir": str(tmp_path / "run"),
        "cache_dir": str(tmp_path / "cache"),
        "model": {"backbone_config": backbone, "tasks": tasks},
        "data": data,
        "task_columns": {task: task},
    }
    return MTLModel(MTLConfig(backbone_config=backbone, tasks=tasks)), from_dict(RunConfig, raw)


@pytest.mark.parametrize("num_channels", [1, 3])
def test_three_modalities_never_merge_into_one_channel(
    brats_root: Path, tmp_path: Path, num_channels: int
) -> None:
    from mtl_hf.options import OptionsError
    from mtl_hf.training.inputs import build_training_data

    data = {"kind": "brats", "root": str(brats_root), "brats": {"modalities": ["flair", "t1", "t1ce"]}}
    model, config = channel_model_and_config(tmp_path, data, num_channels, "tumour")
    if num_channels == 3:
        training = build_training_data(config, model)
        assert training.collate_fn([training.train[0]])["pixel_values"].shape[1] == 3
        return
    with pytest.raises(OptionsError) as info:
        build_training_data(config, model)
    message = str(info.value)
    assert "the images have 3 channel(s) but the backbone takes 1" in message
    assert "data.brats.modalities stacks 3 (flair, t1, t1ce)" in message
    assert "set model.backbone_config.num_channels: 3" in message


@pytest.mark.parametrize("grayscale", [False, True])
def test_colour_images_become_grey_only_when_asked(tmp_path: Path, grayscale: bool) -> None:
    from mtl_hf.options import OptionsError
    from mtl_hf.training.inputs import build_training_data

    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        write_png(tmp_path / f"c{i}.png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        rows.append({"path": f"c{i}.png", "patient_id": f"p{i}", "sick": i % 2})
    write_csv(tmp_path / "m.csv", rows)
    targets = {"sick": {"kind": "binary", "columns": ["sick"]}}
    images = {"manifest": "m.csv", "targets": targets, "grayscale": grayscale}
    data = {"kind": "images", "root": str(tmp_path), "images": images}
    model, config = channel_model_and_config(tmp_path, data, 1, "sick")
    if grayscale:
        training = build_training_data(config, model)
        assert training.collate_fn([training.train[0]])["pixel_values"].shape[1] == 1
        return
    with pytest.raises(
        OptionsError, match=r"3 channel\(s\) but the backbone takes 1.*data.images.grayscale: true"
    ):
        build_training_data(config, model)
