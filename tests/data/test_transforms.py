"""Transforms (processor parity, mask geometry follows the image, the batch path against the per-image
path it replaced, per-sample seeds) and the collate function's batch format."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from mtl_hf import MTLImageProcessor
from mtl_hf.data import (
    AugmentationConfig,
    DataConfig,
    DataError,
    MTLDataCollator,
    MTLTransform,
    apply_transforms,
    build_cache,
    decode_image,
    decode_mask,
    prepare_datasets,
    worker_init_fn,
)
from mtl_hf.data.collate import stack_rows
from mtl_hf.data.slices import SliceStorage, encode_slices
from mtl_hf.data.transforms import affine_grid, per_sample_seeds, warp
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


# -- the batch path against the per-image path it replaced ------------------------------------------


def cached_rows(
    n: int, channels: int, size: int, storage: SliceStorage, images: np.ndarray | None = None
) -> dict[str, list]:
    """Rows as the slice cache stores them (quantised or float, compressed or not), with masks; of
    ``images`` when given, else of noise with a background."""
    rng = np.random.default_rng(1)
    if images is None:
        images = rng.normal(size=(n, channels, size, size)).astype(np.float32)
        images[:, :, : size // 4] = 0.0  # background, as in MR slices
    masks = (rng.random((n, size, size)) > 0.8).astype(np.uint8) * 4
    encoded = list(encode_slices(images, masks, storage))
    rows = {k: [row[k] for row in encoded] for k in encoded[0]}
    rows["patient_id"] = [f"p{i}" for i in range(n)]
    rows["sample_id"] = [f"p{i}/{i}" for i in range(n)]
    return rows


def processor_path(transform: MTLTransform, rows: dict[str, list]) -> torch.Tensor:
    """What the transform computed before the batch path: each decoded image through the processor."""
    n = len(rows["image"])
    images = [decode_image({k: v[i] for k, v in rows.items()}) for i in range(n)]
    size = {"height": transform.size[0], "width": transform.size[1]}
    processor = transform.processor
    x = processor.preprocess(images, do_normalize=False, do_intensity=False, size=size)["pixel_values"]
    mean = torch.tensor(processor.image_mean).view(1, -1, 1, 1)
    std = torch.tensor(processor.image_std).view(1, -1, 1, 1)
    return (x - mean) / std


@pytest.mark.parametrize(
    ("channels", "model_channels", "storage"),
    [
        (4, 4, SliceStorage()),  # the default cache: uint8 + lz4, four modalities
        (4, 4, SliceStorage(compression="zlib")),
        (1, 3, SliceStorage()),  # grey slices into a 3-channel backbone
        (2, 2, SliceStorage(dtype="uint16", compression="none")),
        (1, 1, SliceStorage(dtype="float32", compression="none")),
        (1, 1, SliceStorage(dtype="float16")),
    ],
)
def test_cached_slices_skip_the_processor_with_its_values_bit_for_bit(
    channels: int, model_channels: int, storage: SliceStorage
) -> None:
    rows = cached_rows(5, channels, 24, storage)
    processor = MTLImageProcessor(size=24, num_channels=model_channels)
    off = AugmentationConfig(enabled=False)
    for transform in (MTLTransform(processor), MTLTransform(processor, train=True, augmentation=off)):
        out = transform(rows)
        assert torch.equal(out["pixel_values"], processor_path(transform, rows))
        assert out["pixel_values"].shape == (5, model_channels, 24, 24)
    smaller = MTLTransform(processor, image_size=16)(rows)  # not at the model's size: the processor resizes
    assert torch.equal(smaller["pixel_values"], processor_path(MTLTransform(processor, image_size=16), rows))


def test_cached_batch_names_a_damaged_or_non_finite_sample() -> None:
    rows = cached_rows(3, 1, 16, SliceStorage())
    damaged = {k: list(v) for k, v in rows.items()}
    damaged["image_crc32"][1] ^= 1
    with pytest.raises(DataError, match="p1/1"):
        MTLTransform(MTLImageProcessor(size=16, num_channels=1))(damaged)
    for compression in ("lz4", "zlib"):  # damaged bytes whose checksum was rewritten to match
        broken = cached_rows(3, 1, 16, SliceStorage(compression=compression))
        broken["image"][1] = broken["image"][1][:-3]
        broken["image_crc32"][1] = zlib.crc32(broken["image"][1])
        with pytest.raises(
            DataError, match=rf"p1/1.*cannot decode the stored image \(ValueError: {compression}"
        ):
            MTLTransform(MTLImageProcessor(size=16, num_channels=1))(broken)
    floats = cached_rows(3, 1, 16, SliceStorage(dtype="float32", compression="none"))
    image = np.frombuffer(floats["image"][2], np.float32).copy()
    image[5] = np.nan
    floats["image"][2] = image.tobytes()
    floats["image_crc32"][2] = zlib.crc32(floats["image"][2])
    with pytest.raises(ValueError, match="image 2: contains NaN or inf"):
        MTLTransform(MTLImageProcessor(size=16, num_channels=1))(floats)


def reference_augmentation(
    transform: MTLTransform, image: torch.Tensor, labels: torch.Tensor, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The augmentation of one sample as it was computed before the batch path, an image at a time
    with torch's global generator seeded for that sample: ``F.affine_grid``, ``min``/``max``, ``**``,
    each step out of place."""
    torch.manual_seed(seed)
    aug = transform.augmentation

    def uniform(count: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(count)

    flip_x = torch.where(torch.rand(1) < aug.horizontal_flip, -1.0, 1.0)
    flip_y = torch.where(torch.rand(1) < aug.vertical_flip, -1.0, 1.0)
    angle = torch.deg2rad(uniform(1, -aug.rotation_degrees, aug.rotation_degrees))
    shear = torch.deg2rad(uniform(1, -aug.shear_degrees, aug.shear_degrees))
    scale = torch.exp(uniform(1, math.log(aug.scale[0]), math.log(aug.scale[1])))
    shift = uniform(2, -2 * aug.translate, 2 * aug.translate).view(1, 2)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    shear_m = torch.eye(2)[None].clone()
    shear_m[:, 0, 1] = torch.tan(shear)
    flips = torch.diag_embed(torch.stack([flip_x, flip_y], -1))
    inverse = torch.linalg.inv(rotation @ shear_m @ (scale.view(1, 1, 1) * flips))
    theta = torch.cat([inverse, -(inverse @ shift.unsqueeze(-1))], dim=-1)
    grid = F.affine_grid(theta, [1, *image.shape], align_corners=False)
    x = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mask = F.grid_sample(labels[None, None].float(), grid, mode="nearest", align_corners=False)
    lo, hi = x.min(), x.max()
    span = (hi - lo).clamp_min(1e-6)
    gamma = torch.exp(uniform(1, math.log(aug.gamma[0]), math.log(aug.gamma[1])))
    x = lo + span * ((x - lo) / span).clamp(0, 1) ** gamma
    factor = uniform(1, 1 - aug.contrast, 1 + aug.contrast)
    x = x.mean() + factor * (x - x.mean())
    x = x + span * uniform(1, -aug.brightness, aug.brightness)
    x = x + span * aug.noise_std * torch.randn(x.shape)
    return x[0], mask[0, 0].round().to(torch.uint8)


@pytest.mark.parametrize("background", [None, 0.0, -0.3])
def test_batched_augmentation_matches_the_per_image_reference(background: float | None) -> None:
    """``background`` ``None``: quantised noise slices; else slices that are zero outside their content
    (the warp and the gamma's power then computed in the content's box alone), the content shifted by
    ``background`` (0: zero is each image's minimum, the power of the background left at 0; -0.3: not).
    With the processor's normalisation (folded into the jitter's multiply-add) for those."""
    if background is None:
        rows = cached_rows(6, 2, 32, SliceStorage())
    else:
        images = zero_background_images(6, 2, 32, np.random.default_rng(5))
        images[images != 0] += background
        rows = cached_rows(6, 2, 32, SliceStorage(dtype="float32"), images=images)
    processor = MTLImageProcessor(size=32, num_channels=2, do_normalize=False)
    mean, std = ([0.2, -0.1], [0.5, 2.0]) if background is not None else ([0.0, 0.0], [1.0, 1.0])
    normalizing = MTLImageProcessor(size=32, num_channels=2, image_mean=mean, image_std=std)
    jitter = AugmentationConfig(rotation_degrees=20, shear_degrees=8, translate=0.1, noise_std=0.05)
    transform = MTLTransform(normalizing, train=True, augmentation=jitter, lesion_labels=[4])
    seeds = [11, 5, 2024, 7, 0, 99]
    with per_sample_seeds(seeds):
        out = transform(rows)
    plain = MTLTransform(processor, lesion_labels=[4])(rows)
    for i, seed in enumerate(seeds):
        labels = plain["lesion_mask"][i].to(torch.uint8) * 4
        image, mask = reference_augmentation(transform, plain["pixel_values"][i], labels, seed)
        image = (image - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)
        torch.testing.assert_close(out["pixel_values"][i], image, atol=2e-5, rtol=1e-5)
        assert torch.equal(out["lesion_mask"][i], mask == 4)
    with per_sample_seeds(seeds[:2]), pytest.raises(ValueError, match="2 seeds for a batch of 6"):
        transform(rows)


def zero_background_images(n: int, channels: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Images that are exactly zero outside a random box (a skull-stripped slice), one touching an edge,
    one all zero, one without background."""
    images = np.zeros((n, channels, size, size), np.float32)
    for i in range(n):
        y0, x0 = rng.integers(0, size // 2, size=2)
        y1, x1 = rng.integers(size // 2 + 2, size + 1, size=2)
        images[i, :, y0:y1, x0:x1] = rng.random((channels, y1 - y0, x1 - x0)) + 0.1
    images[1, :, :, : size // 3] = 0.0
    images[1, :, 2:9, : size // 3 + 1] = 0.5  # content at the left edge
    images[2] = 0.0
    images[3] = rng.random((channels, size, size))
    return images


def test_warp_samples_only_the_content_and_equals_grid_sample() -> None:
    """The warp samples the box that can see non-zero content and nothing else; the images and masks
    equal one ``F.grid_sample`` of the whole batch (bilinear / nearest, zero padding) on the same grid,
    value for value, and on ``F.affine_grid``'s within its rounding."""
    rng = np.random.default_rng(4)
    size = 40
    images = torch.from_numpy(zero_background_images(8, 3, size, rng))
    labels = torch.zeros((8, size, size), dtype=torch.uint8)
    labels[0, 10:14, 12:20] = 4
    labels[3, 0:5, 30:40] = 2  # at a corner
    labels[5, 20, 20] = 1  # one pixel
    transform = MTLTransform(
        MTLImageProcessor(size=size, num_channels=3), train=True, augmentation=GEOMETRY_ONLY
    )
    theta = transform.sample_affine(transform.draw_from(8, (3, size, size), torch.Generator().manual_seed(0)))
    theta[6, :, :2] *= 3.0  # zoomed far out: the content shrinks to a few pixels
    theta[7, :, 2] = 2.5  # shifted off the image: nothing left
    grid = affine_grid(theta, (size, size))
    expected = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    expected_labels = F.grid_sample(labels[:, None].float(), grid, mode="nearest", align_corners=False)
    warped, warped_labels, regions = warp(images.clone(), labels.clone(), theta)
    assert torch.equal(warped, expected)
    assert torch.equal(warped_labels, expected_labels[:, 0].round().to(torch.uint8))
    torch_grid = F.affine_grid(theta, [8, 3, size, size], align_corners=False)
    torch.testing.assert_close(grid, torch_grid, atol=2e-6, rtol=0)
    torch.testing.assert_close(
        warped, F.grid_sample(images, torch_grid, align_corners=False), atol=2e-5, rtol=0
    )
    assert regions[2] is None and regions[7] is None and regions[3] is not None
    for image, region in zip(warped, regions, strict=True):
        r0, r1, c0, c1 = region if region is not None else (0, 0, 0, 0)
        outside = image.clone()
        outside[:, r0:r1, c0:c1] = 0
        assert not outside.any()
    sampled = sum((r[1] - r[0]) * (r[3] - r[2]) for r in regions if r is not None)
    assert sampled < 0.75 * 8 * size * size  # the background was not sampled


def test_collate_puts_a_batch_back_together_without_copying() -> None:
    batch = torch.arange(5 * 2 * 3 * 3, dtype=torch.float32).view(5, 2, 3, 3)
    rows = [batch[i] for i in range(5)]
    stacked = stack_rows(rows)
    assert torch.equal(stacked, batch) and stacked.data_ptr() == batch.data_ptr()
    assert torch.equal(stack_rows(rows[1:4]), batch[1:4])
    shuffled = [rows[i] for i in (2, 0, 4)]  # not consecutive: copied
    assert torch.equal(stack_rows(shuffled), torch.stack(shuffled))
    assert stack_rows(shuffled).data_ptr() != batch.data_ptr()
    assert torch.equal(stack_rows([batch[0], batch[1].clone()]), batch[:2])


def test_epoch_seeded_batch_equals_its_samples_one_by_one() -> None:
    from datasets import Dataset as ArrowDataset

    from mtl_hf.training.faults import GuardedDataset, SkippedSample
    from mtl_hf.training.inputs import EpochSeeded

    rows = cached_rows(5, 1, 24, SliceStorage())
    transform = MTLTransform(MTLImageProcessor(size=24, num_channels=1), train=True)
    data = EpochSeeded(ArrowDataset.from_dict(rows).with_transform(transform), seed=3)
    data.set_epoch(1)
    state = torch.get_rng_state()
    batch = data.__getitems__([3, 0, 4])
    assert torch.equal(torch.get_rng_state(), state)  # the training process's stream is untouched
    for index, row in zip([3, 0, 4], batch, strict=True):
        assert torch.equal(row["pixel_values"], data[index]["pixel_values"])
    data.set_epoch(2)
    assert not torch.equal(data[3]["pixel_values"], batch[0]["pixel_values"])

    damaged = {k: list(v) for k, v in rows.items()}
    damaged["mask_crc32"][0] ^= 1
    guarded = GuardedDataset(EpochSeeded(ArrowDataset.from_dict(damaged).with_transform(transform), seed=3))
    guarded.set_epoch(2)
    fetched = guarded.__getitems__([3, 0, 4])
    assert isinstance(fetched[1], SkippedSample) and fetched[1].index == 0 and "p0/0" in fetched[1].error
    assert torch.equal(fetched[0]["pixel_values"], data[3]["pixel_values"])
    assert torch.equal(fetched[2]["pixel_values"], data[4]["pixel_values"])
