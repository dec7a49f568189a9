"""Transforms (processor parity, mask geometry follows the image) and the collate function's batch format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from mtl_hf import MTLImageProcessor
from mtl_hf.data import (
    AugmentationConfig,
    DataConfig,
    MTLDataCollator,
    MTLTransform,
    apply_transforms,
    build_cache,
    decode_image,
    decode_mask,
    prepare_datasets,
    worker_init_fn,
)
from mtl_hf.options import from_dict

from .files import brats_config, make_volumes, write_case, write_csv, write_png

GEOMETRY_ONLY = AugmentationConfig(
    horizontal_flip=0.5, vertical_flip=0.5, rotation_degrees=30, scale=(0.8, 1.2), translate=0.1,
    shear_degrees=10, brightness=0.0, contrast=0.0, gamma=(1.0, 1.0), noise_std=0.0,
)  # fmt: skip


def square_rows(n: int, size: int = 40) -> dict[str, list]:
    """Dark images with a bright off-centre rectangle, and that rectangle as mask (raw BraTS-style rows)."""
    rng = np.random.default_rng(0)
    rows: dict[str, list] = {k: [] for k in ("image", "image_shape", "image_dtype", "mask", "patient_id")}
    for i in range(n):
        image = np.zeros((1, size, size), dtype=np.float32)
        y, x = rng.integers(4, size - 20, size=2)
        image[0, y : y + 14, x : x + 10] = 1.0
        rows["image"].append(image.tobytes())
        rows["image_shape"].append([1, size, size])
        rows["image_dtype"].append("float32")
        rows["mask"].append((image[0] > 0.5).astype(np.uint8).tobytes())
        rows["patient_id"].append(f"p{i}")
    return rows


def test_eval_transform_equals_the_image_processor() -> None:
    processor = MTLImageProcessor(size=32)
    rows = square_rows(3)
    out = MTLTransform(processor, train=False)(rows)
    images = [decode_image({k: v[i] for k, v in rows.items()}) for i in range(3)]
    expected = processor(images, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(out["pixel_values"], expected)
    assert out["pixel_values"].shape == (3, 3, 32, 32)
    assert out["patient_id"] == ["p0", "p1", "p2"] and "image" not in out and "mask" not in out


def test_mask_follows_the_image_geometry() -> None:
    processor = MTLImageProcessor(size=48, num_channels=1, do_normalize=False)
    rows = square_rows(16, size=48)
    plain = MTLTransform(processor, train=False)(rows)
    generator = torch.Generator().manual_seed(0)
    aug = MTLTransform(processor, train=True, augmentation=GEOMETRY_ONLY, generator=generator)(rows)
    moved = 0
    for i in range(16):
        bright = aug["pixel_values"][i, 0] > 0.5
        mask = aug["lesion_mask"][i]
        iou = (bright & mask).sum() / (bright | mask).sum()
        assert iou > 0.85, (i, float(iou))
        moved += int((mask != plain["lesion_mask"][i]).any())
    assert moved >= 14  # the warp did move nearly every mask
    again = MTLTransform(processor, train=True, augmentation=GEOMETRY_ONLY,
                         generator=torch.Generator().manual_seed(0))(rows)  # fmt: skip
    torch.testing.assert_close(again["pixel_values"], aug["pixel_values"])


def test_flip_only_is_exact() -> None:
    processor = MTLImageProcessor(size=40, num_channels=1, do_normalize=False)
    rows = square_rows(4)
    flip = AugmentationConfig(horizontal_flip=1.0, rotation_degrees=0, scale=(1, 1), translate=0, shear_degrees=0,
                              brightness=0, contrast=0, gamma=(1, 1))  # fmt: skip
    out = MTLTransform(processor, train=True, augmentation=flip)(rows)
    for i in range(4):
        image = decode_image({k: v[i] for k, v in rows.items()})[0]
        torch.testing.assert_close(
            out["pixel_values"][i, 0], torch.from_numpy(image[:, ::-1].copy()), atol=1e-5, rtol=0
        )
        assert torch.equal(out["lesion_mask"][i], torch.from_numpy(image[:, ::-1] > 0.5))


def test_intensity_jitter_leaves_mask_alone() -> None:
    processor = MTLImageProcessor(size=40, num_channels=1, do_normalize=False)
    rows = square_rows(4)
    jitter = AugmentationConfig(horizontal_flip=0, rotation_degrees=0, scale=(1, 1), translate=0, shear_degrees=0,
                                brightness=0.2, contrast=0.3, gamma=(0.5, 2.0), noise_std=0.05)  # fmt: skip
    out = MTLTransform(processor, train=True, augmentation=jitter)(rows)
    plain = MTLTransform(processor, train=False)(rows)
    assert torch.equal(out["lesion_mask"], plain["lesion_mask"])
    assert not torch.allclose(out["pixel_values"], plain["pixel_values"])


def test_brats_pipeline_batches_with_lesion_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(6):
        write_case(tmp_path / f"P{i}", f"P{i}", make_volumes(rng, tumour=i % 2 == 0))
    config = brats_config(tmp_path, tumour_labels=[1, 4], min_tumour_pixels=1)
    config.image_size = 16
    prepared = prepare_datasets(config, tmp_path / "cache")
    processor = MTLImageProcessor(size=16)
    splits = apply_transforms(prepared.datasets, config, processor)
    collate = MTLDataCollator({"tumour_task": "tumour"}, features=prepared.datasets["train"].features)
    rows = [splits["validation"][i] for i in range(len(splits["validation"]))]
    batch = collate(rows)
    assert (
        batch["pixel_values"].shape == (len(rows), 3, 16, 16) and batch["pixel_values"].dtype == torch.float32
    )
    labels = batch["labels"]["tumour_task"]
    assert labels.dtype == torch.float32 and labels.shape == (len(rows),)
    raw = prepared.datasets["validation"]
    assert labels.tolist() == [float(t) for t in raw["tumour"]]
    assert batch["lesion_mask"].dtype == torch.bool and batch["lesion_mask"].shape == (len(rows), 16, 16)
    for i, row in enumerate(raw):  # the lesion is the core labels only, at the model's size
        seg = torch.from_numpy(decode_mask(row).copy())
        core = torch.isin(seg, torch.tensor([1, 4], dtype=torch.uint8))
        resized = torch.nn.functional.interpolate(
            core[None, None].float(), size=(16, 16), mode="nearest-exact"
        )
        assert torch.equal(batch["lesion_mask"][i], resized[0, 0].bool())
    assert batch["patient_id"] == list(raw["patient_id"]) and batch["sample_id"] == list(raw["sample_id"])


def test_collate_dtypes_for_every_target_kind(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for i, (diag, flags) in enumerate([("healthy", (0, 0)), ("a", (1, 0)), ("b", (1, 1)), ("a", (0, 1))]):
        write_png(tmp_path / f"{i}.png", rng.integers(0, 255, (9, 7), dtype=np.uint8))
        rows.append({"path": f"{i}.png", "patient_id": f"p{i}", "diag": diag, "a": flags[0], "b": flags[1]})
    write_csv(tmp_path / "m.csv", rows)
    config = from_dict(DataConfig, {"kind": "images", "root": str(tmp_path), "image_size": 8, "images": {
        "manifest": "m.csv", "targets": {
            "binary": {"kind": "binary", "columns": ["diag"], "negative": ["healthy"]},
            "multiclass": {"kind": "multiclass", "columns": ["diag"], "classes": ["healthy", "a", "b"]},
            "multilabel": {"kind": "multilabel", "columns": ["a", "b"]}}}})  # fmt: skip
    ds, _ = build_cache(config, tmp_path / "cache")
    transformed = ds.with_transform(MTLTransform(MTLImageProcessor(size=8, num_channels=1)))
    collate = MTLDataCollator({"t1": "binary", "t2": "multiclass", "t3": "multilabel"}, features=ds.features)
    loader = DataLoader(
        transformed, batch_size=4, collate_fn=collate, num_workers=1, worker_init_fn=worker_init_fn
    )
    (batch,) = list(loader)
    assert batch["pixel_values"].shape == (4, 1, 8, 8)
    binary, multiclass, multilabel = (batch["labels"][t] for t in ("t1", "t2", "t3"))
    assert binary.dtype == torch.float32 and binary.tolist() == [0.0, 1.0, 1.0, 1.0]
    assert multiclass.dtype == torch.long and multiclass.tolist() == [0, 1, 2, 1]
    assert multilabel.dtype == torch.float32 and multilabel.tolist() == [[0, 0], [1, 0], [1, 1], [0, 1]]
    assert "lesion_mask" not in batch  # no row had a mask
    explicit = MTLDataCollator(
        {"t": "multilabel"}, target_kinds={"multilabel": "multilabel"}, num_labels={"multilabel": 2}
    )
    assert explicit(
        [{"pixel_values": torch.zeros(1, 2, 2), "multilabel": [1], "patient_id": "p", "sample_id": "s"}]
    )["labels"]["t"].tolist() == [[0.0, 1.0]]


def _threads_in_worker(_: object) -> list[int]:
    from threadpoolctl import threadpool_info

    return [torch.get_num_threads()] + [pool["num_threads"] for pool in threadpool_info()]


def test_worker_init_fn_leaves_one_thread_per_pool() -> None:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=2):  # the training process's BLAS / OpenMP pools, inherited by workers
        plain = DataLoader(range(2), batch_size=2, num_workers=1, collate_fn=_threads_in_worker)
        limited = DataLoader(range(2), batch_size=2, num_workers=1, collate_fn=_threads_in_worker,
                             worker_init_fn=worker_init_fn)  # fmt: skip
        (without,) = list(plain)
        (with_init,) = list(limited)
    assert max(without) == 2  # torch's count is 1 already; the other pools are not
    assert set(with_init) == {1}
