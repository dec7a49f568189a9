"""The Arrow cache: a second build is a hit that reads no input; a failed build leaves no usable cache."""

from __future__ import annotations

import os
import uuid
import zlib
from pathlib import Path

import numpy as np
import pytest

from mtl_hf.data import DataError, build_cache, decode_image, decode_mask, prepare_datasets
from mtl_hf.data import cache as cache_module
from mtl_hf.data.parallel import read_in_order

from .files import brats_config, make_volumes, write_case


def arrow_files(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*.arrow") if ".incomplete" not in str(p)]


def test_second_build_is_a_cache_hit_that_reads_no_file(brats_root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    config = brats_config(brats_root)
    first, s1 = build_cache(config, cache)
    assert not s1.cache_hit and s1.files_read == 6 and s1.num_patients == 6
    files = arrow_files(cache)
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns

    # Overwrite one input with garbage of the same size and restore its time stamp: the fingerprint is
    # unchanged, so a build that read the file would fail; a cache hit does not read it.
    flair = next(brats_root.rglob("*_flair.nii.gz"))
    st = flair.stat()
    flair.write_bytes(b"\0" * st.st_size)
    os.utime(flair, ns=(st.st_atime_ns, st.st_mtime_ns))
    second, s2 = build_cache(config, cache)
    assert s2.cache_hit and s2.fingerprint == s1.fingerprint
    assert s2.files_read == s1.files_read  # the summary of the build that made the cache
    assert arrow_files(cache) == files and files[0].stat().st_mtime_ns == stamp
    assert list(second["sample_id"]) == list(first["sample_id"])

    # Settings that act after the cache keep the fingerprint; a changed input file does not.
    after = brats_config(brats_root, split={"train": 0.5, "validation": 0.25, "test": 0.25})
    assert build_cache(after, cache)[1].cache_hit
    os.utime(flair, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(DataError, match=str(flair)):
        build_cache(config, cache)


def test_reading_options_change_the_fingerprint(brats_root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _, a = build_cache(brats_config(brats_root), cache)
    _, b = build_cache(brats_config(brats_root, min_tumour_pixels=5), cache)
    assert a.fingerprint != b.fingerprint and not b.cache_hit


def test_failed_build_leaves_no_cache_mistaken_for_complete(brats_root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    rng = np.random.default_rng(9)
    bad = make_volumes(rng)
    bad["flair"] = bad["flair"].astype(np.float32)
    bad["flair"][2, 2, 2] = np.nan
    write_case(
        brats_root / "BraTS2021_99999", "BraTS2021_99999", bad
    )  # the last patient: rows before it were written
    config = brats_config(brats_root)
    for _ in range(2):  # the second attempt must fail again, not find a partial cache
        with pytest.raises(DataError, match="BraTS2021_99999_flair"):
            build_cache(config, cache)
        assert arrow_files(cache) == []
    with pytest.warns(UserWarning, match="BraTS2021_99999_flair"):
        ds, summary = build_cache(brats_config(brats_root, skip_bad=True), cache)
    assert not summary.cache_hit and summary.num_patients == 6 and len(summary.skipped) == 1
    assert "BraTS2021_99999" not in set(ds["patient_id"])


def test_num_proc_builds_the_same_rows(brats_root: Path, tmp_path: Path) -> None:
    one, _ = build_cache(brats_config(brats_root), tmp_path / "a")
    two, summary = build_cache(brats_config(brats_root), tmp_path / "b", num_proc=2)
    assert summary.files_read == 6 and not summary.cache_hit
    assert sorted(one["sample_id"]) == sorted(two["sample_id"])


NOTES: Path | None = None
"""Folder where :func:`read_noting_process` leaves one file per item read (set by the test below)."""
REAL_READ_ITEM = cache_module.read_item


def read_noting_process(*args: object) -> object:
    """The cache's own item reader, which also notes the id of the process that ran it."""
    assert NOTES is not None
    result = REAL_READ_ITEM(*args)  # type: ignore[arg-type]
    (NOTES / f"{os.getpid()}-{uuid.uuid4().hex}").touch()
    return result


def test_num_proc_reads_the_items_in_worker_processes(
    brats_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    global NOTES
    NOTES = tmp_path / "notes"
    NOTES.mkdir()
    monkeypatch.setattr(cache_module, "read_item", read_noting_process)
    _, summary = build_cache(brats_config(brats_root), tmp_path / "cache", num_proc=2)
    readers = [int(p.name.split("-")[0]) for p in NOTES.iterdir()]
    assert summary.files_read == len(readers) == 6
    assert os.getpid() not in readers  # every patient was read by a worker, none by this process
    assert len(set(readers)) <= 2


def test_read_in_order_keeps_the_order_and_returns_data_errors() -> None:
    items = list(range(9))
    results = list(read_in_order(pid_or_error, items, 3))
    assert [r.path if isinstance(r, DataError) else r[0] for r in results] == [
        "item 4" if i == 4 else i for i in items
    ]
    assert os.getpid() not in {r[1] for r in results if not isinstance(r, DataError)}


def pid_or_error(item: int) -> tuple[int, int]:
    if item == 4:
        raise DataError(f"item {item}", "unreadable")
    return item, os.getpid()


def test_prepare_twice_reuses_cache_and_manifest(brats_root: Path, tmp_path: Path) -> None:
    config = brats_config(brats_root)
    first = prepare_datasets(config, tmp_path / "cache")
    second = prepare_datasets(config, tmp_path / "cache")
    assert second.summary.cache_hit
    assert second.split_manifest_sha256 == first.split_manifest_sha256
    # the split manifest goes to the cache, never into the (often read-only) data folder
    assert Path(first.split_manifest_path).is_relative_to(tmp_path / "cache")
    assert not list(brats_root.glob("splits-*.json"))
    for split in ("train", "validation", "test"):
        assert list(second.datasets[split]["sample_id"]) == list(first.datasets[split]["sample_id"])


def test_a_damaged_slice_in_the_cache_is_caught_by_its_checksum(brats_root: Path, tmp_path: Path) -> None:
    """Raw slice bytes have no format checksum: one flipped bit in the Arrow file must not be read as a
    slightly different image or mask."""
    config, cache = brats_config(brats_root), tmp_path / "cache"
    dataset, _ = build_cache(config, cache)
    index = int(np.argmax(dataset["tumour_pixels"]))  # a slice with a lesion in its mask
    row = dataset[index]
    assert row["image_crc32"] == zlib.crc32(row["image"]) and row["mask_crc32"] == zlib.crc32(row["mask"])

    (arrow,) = arrow_files(cache)
    original = arrow.read_bytes()
    for column, decode in (("image", decode_image), ("mask", decode_mask)):
        data = row[column]
        damaged = bytearray(original)
        damaged[original.find(data) + len(data) // 2] ^= 0x01  # one bit of one value of some row
        arrow.write_bytes(bytes(damaged))
        failed = []
        for r in build_cache(config, cache)[0]:  # a cache hit: the damaged file is what is read
            try:
                decode(r)
            except DataError as exc:
                failed.append((r["sample_id"], str(exc)))
        assert len(failed) == 1, failed  # the damaged row, and no other
        sample, message = failed[0]
        assert f"(sample {sample}): cannot decode the stored {column} (ValueError: CRC-32 mismatch" in message
        assert "the cache is damaged: delete the cache folder to rebuild it" in message
        arrow.write_bytes(original)
    assert all(decode_mask(r) is not None for r in build_cache(config, cache)[0])  # repaired
