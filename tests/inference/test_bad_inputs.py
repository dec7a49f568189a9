"""``predict`` over many files when some are bad: real truncated, damaged and hostile files (written by
nibabel, Pillow and gzip in the test). Every good file is predicted, every bad one named (stderr,
``errors.csv``), the exit status is 1, and nothing is written through a planted symbolic link."""

from __future__ import annotations

import csv
import gzip
import os
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from mtl_hf.cli import main as cli_main
from mtl_hf.data import DataError
from mtl_hf.inference import UnsafeOutputError, predict, read_file
from mtl_hf.inference.cli import main
from tests.data.files import nifti_header_bytes, sparse_nifti


def write_good_inputs(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / "good.png"
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(png)
    volume = folder / "good.nii.gz"
    nib.save(nib.Nifti1Image(rng.integers(1, 1000, (64, 64, 3)).astype(np.int16), np.eye(4)), volume)
    return [png, volume]


def write_bad_inputs(folder: Path) -> dict[str, str]:
    """``{file: expected reason}``: the failures seen on real data, each a real file."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    truncated_nii = folder / "truncated.nii.gz"
    nib.save(nib.Nifti1Image(rng.integers(1, 1000, (64, 64, 8)).astype(np.int16), np.eye(4)), truncated_nii)
    data = truncated_nii.read_bytes()
    truncated_nii.write_bytes(data[: len(data) // 2])
    not_nifti = folder / "notes.nii"
    not_nifti.write_text("this is a text file named like a volume\n" * 20)
    truncated_png = folder / "truncated.png"
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(truncated_png)
    data = truncated_png.read_bytes()
    truncated_png.write_bytes(data[: len(data) - 200])
    return {
        str(truncated_nii): "cannot read NIfTI volume (EOFError",
        str(not_nifti): "cannot read NIfTI volume (ImageFileError",
        str(truncated_png): "image file is truncated",
    }


def test_bad_files_are_named_and_the_good_ones_predicted(
    three_task_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    good = write_good_inputs(tmp_path / "in")
    bad = write_bad_inputs(tmp_path / "in")
    out = tmp_path / "out"
    argv = [str(three_task_model), str(tmp_path / "in"), "-o", str(out), "--task", "tumour", "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    with open(out / "errors.csv", newline="") as f:
        errors = {row["source"]: row["reason"] for row in csv.DictReader(f)}
    assert set(errors) == set(bad)
    for path, reason in bad.items():
        assert reason in errors[path] and f"error: {path}: {errors[path]}" in err
    with open(out / "predictions.csv", newline="") as f:
        predicted = [row["source"] for row in csv.DictReader(f)]
    assert predicted == [str(good[1])] * 3 + [str(good[0])]  # sorted folder order: good.nii.gz, good.png
    # The same predictions as for the good files alone (the bad ones change nothing).
    alone = predict(three_task_model, good, tasks=["tumour"], progress=False)
    with open(out / "predictions.csv", newline="") as f:
        rows = {(r["source"], r["index"]): float(r["tumour"]) for r in csv.DictReader(f)}
    for p in alone.images:
        index = "" if p.index is None else str(p.index)
        assert rows[(p.source, index)] == pytest.approx(float(p.predictions["tumour"][0]), abs=1e-6)


def test_every_error_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    for path, reason in write_bad_inputs(tmp_path).items():
        with pytest.raises(DataError, match=reason.replace("(", r"\(")) as info:
            list(read_file(path))
        assert info.value.path == path


def hostile_inputs(folder: Path) -> dict[str, str]:
    """Resource bombs, built small: ``{file: expected reason}``."""
    folder.mkdir(parents=True, exist_ok=True)
    huge_header = folder / "huge_header.nii"
    huge_header.write_bytes(nifti_header_bytes((4000, 4000, 4000)) + bytes(1000))  # 1.3 KB, 4000³ declared
    bomb = folder / "bomb.nii.gz"
    bomb.write_bytes(gzip_of_zeros(nifti_header_bytes((1200, 1200, 1200)), 1200**3))
    big_png = folder / "big.png"
    big_png.write_bytes(png_declaring(30000, 30000))
    return {
        str(huge_header): "over the limit of 4.0 GiB",
        str(bomb): "over the limit of 4.0 GiB",
        str(big_png): "too large",
    }


def gzip_of_zeros(head: bytes, zeros: int) -> bytes:
    """A gzip file of ``head`` then ``zeros`` zero bytes (1.7 GB of zeros take 1.7 MB): members of one
    compressed 16 MiB block, repeated (a gzip file may hold several members; readers join them)."""
    block = 1 << 24
    full, rest = divmod(zeros, block)
    member = gzip.compress(bytes(block), compresslevel=9, mtime=0)
    return gzip.compress(head, mtime=0) + member * full + gzip.compress(bytes(rest), compresslevel=9, mtime=0)


def png_declaring(width: int, height: int) -> bytes:
    """A real PNG file of one 1 x 1 grey pixel whose header says ``width`` x ``height``."""
    import io
    import zlib

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def test_resource_bombs_are_refused_by_name(
    three_task_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bombs = hostile_inputs(tmp_path / "in")
    assert os.path.getsize(tmp_path / "in" / "bomb.nii.gz") < 3 * 2**20
    good = write_good_inputs(tmp_path / "in")
    out = tmp_path / "out"
    argv = [str(three_task_model), str(tmp_path / "in"), "-o", str(out), "--task", "tumour", "--no-progress"]
    assert main(argv) == 1
    with open(out / "errors.csv", newline="") as f:
        errors = {row["source"]: row["reason"] for row in csv.DictReader(f)}
    assert set(errors) == set(bombs)
    for path, reason in bombs.items():
        assert reason in errors[path]
    with open(out / "predictions.csv", newline="") as f:
        assert {row["source"] for row in csv.DictReader(f)} == {str(p) for p in good}


@pytest.mark.parametrize(
    "planted", ["predictions.csv", "predictions.json", "errors.csv", "volume_predictions.csv"]
)
def test_a_planted_link_is_refused_and_its_target_untouched(
    three_task_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture, planted: str
) -> None:
    good = write_good_inputs(tmp_path / "in")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / planted).symlink_to(victim)
    with pytest.raises(UnsafeOutputError, match=f"{planted}: is a symbolic link"):
        predict(three_task_model, good, output_dir=out, tasks=["tumour"], progress=False)
    assert victim.read_text() == "precious\n"
    assert cli_main(["predict", str(three_task_model), *map(str, good), "-o", str(out), "--no-progress"]) == 1
    assert (
        f"mtl-hf predict: error: UnsafeOutputError: {out / planted}: is a symbolic link"
        in capsys.readouterr().err
    )
    assert victim.read_text() == "precious\n" and (out / planted).is_symlink()
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_an_output_folder_that_is_a_file_is_refused_before_any_work(
    three_task_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    good = write_good_inputs(tmp_path / "in")
    taken = tmp_path / "taken.csv"
    taken.write_text("precious\n")
    for out in (taken, taken / "below"):
        with pytest.raises(UnsafeOutputError, match=f"{taken}: is a file, not a folder"):
            predict(three_task_model, good, output_dir=out, tasks=["tumour"], progress=False)
    argv = ["predict", str(three_task_model), *map(str, good), "-o", str(taken), "--no-progress"]
    assert cli_main(argv) == 1
    assert (
        f"mtl-hf predict: error: UnsafeOutputError: {taken}: is a file, not a folder"
        in capsys.readouterr().err
    )
    assert taken.read_text() == "precious\n"


def test_outputs_replace_older_files_whole(three_task_model: Path, tmp_path: Path) -> None:
    good = write_good_inputs(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions.csv").write_text("old\n" * 10_000)
    hard = tmp_path / "hard_link_to_old.csv"
    os.link(out / "predictions.csv", hard)
    predict(three_task_model, good, output_dir=out, tasks=["tumour"], progress=False)
    assert (out / "predictions.csv").read_text().startswith("source,index,tumour")
    assert hard.read_text() == "old\n" * 10_000  # a new file was renamed in; the old one not rewritten
    assert (out / "errors.csv").read_text().strip() == "source,reason"


@pytest.mark.parametrize("intensity", ["brain", "volume", "slice"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
def test_the_volume_memory_estimate_bounds_the_measured_peak(
    tmp_path: Path, dtype: type, intensity: str
) -> None:
    """``predict`` refuses a volume whose estimated peak is over the bound; the estimate must hold the
    real peak (numpy's allocations as tracemalloc sees them) without overstating it more than twice."""
    import tracemalloc

    from mtl_hf.data.readers import read_header
    from mtl_hf.inference.readers import read_nifti_slices, volume_peak_bytes

    rng = np.random.default_rng(0)
    data = rng.integers(1, 200, (96, 80, 48)).astype(dtype)
    data[:10] = 0
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii.gz")
    header = read_header(tmp_path / "v.nii.gz")
    estimate = volume_peak_bytes(header, intensity)  # type: ignore[arg-type]
    tracemalloc.start()
    try:
        slices = list(read_nifti_slices(tmp_path / "v.nii.gz", intensity=intensity))  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(slices) == 48
    assert peak <= estimate <= 2 * peak, (peak, estimate)


def test_a_volume_over_the_memory_bound_is_refused(tmp_path: Path) -> None:
    from mtl_hf.data.readers import MAX_VOLUME_BYTES

    path = sparse_nifti(tmp_path / "big.nii", (800, 800, 800))  # a complete 800³ volume of zeros
    assert MAX_VOLUME_BYTES >= 800**3 * 8  # within the per-file bound; over the bound of one read
    with pytest.raises(
        DataError, match=r"reading a volume of shape \(800, 800, 800\) needs .* over the limit of 8.0 GiB"
    ):
        list(read_file(path))


def test_colour_into_a_grey_model_is_named_unless_asked_to_convert(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from mtl_hf import MTLImageProcessor, MTLModel
    from tests.conftest import tiny_config

    model = tmp_path / "grey_model"
    MTLModel(tiny_config(backbone={"num_channels": 1})).save_pretrained(model)
    MTLImageProcessor(size=64, num_channels=1).save_pretrained(model)
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    Image.fromarray(colour[..., 0]).save(tmp_path / "grey.png")
    inputs = [str(tmp_path / "colour.png"), str(tmp_path / "grey.png")]
    out = tmp_path / "out"
    assert main([str(model), *inputs, "-o", str(out), "--task", "tumour", "--no-progress"]) == 1
    with open(out / "errors.csv", newline="") as f:
        (error,) = list(csv.DictReader(f))
    assert error["source"] == inputs[0]
    assert "3 channel(s) but the backbone takes 1" in error["reason"] and "--grayscale" in error["reason"]
    assert (
        main([str(model), *inputs, "-o", str(out), "--task", "tumour", "--no-progress", "--grayscale"]) == 0
    )
    converted = predict(model, [tmp_path / "colour.png"], tasks=["tumour"], grayscale=True, progress=False)
    luma = np.asarray(Image.fromarray(colour).convert("L"))  # ITU-R 601, as training's grayscale reading
    Image.fromarray(luma).save(tmp_path / "luma.png")
    expected = predict(model, [tmp_path / "luma.png"], tasks=["tumour"], progress=False)
    assert converted.images[0].predictions["tumour"] == pytest.approx(
        expected.images[0].predictions["tumour"]
    )
