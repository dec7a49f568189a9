"""SimMIM block masks (exact counts, block structure, patch sizes that do not divide 32, tiny images),
the patch layout and per-patch normalisation, by value."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtl_hf.masking import (
    coarse_scale,
    denormalize_patches,
    normalize_patches,
    patchify,
    pixel_mask,
    random_block_mask,
    unpatchify,
)


def test_vit16_at_224_is_simmim() -> None:
    mask = random_block_mask(8, (14, 14), patch_size=16, mask_patch_size=32, mask_ratio=0.6)
    assert mask.shape == (8, 196) and mask.dtype == torch.bool
    # 7x7 coarse cells, round(0.6 * 49) = 29 masked cells of 2x2 patches each
    assert mask.sum(dim=1).tolist() == [29 * 4] * 8
    grid = mask.view(8, 14, 14)
    blocks = grid.view(8, 7, 2, 7, 2)
    assert torch.equal(blocks.all(dim=(2, 4)), blocks.any(dim=(2, 4)))  # each 2x2 block all or nothing


def test_patch_14_uses_28px_blocks_and_crops_the_border() -> None:
    assert coarse_scale(14, 32, (16, 16)) == 2
    mask = random_block_mask(4, (15, 15), patch_size=14, mask_ratio=0.6)
    assert mask.shape == (4, 225)
    # coarse grid ceil(15/2)=8 -> 64 cells, 38 masked; cropping the last row/column drops some patches
    counts = mask.sum(dim=1)
    assert ((counts >= 38 * 4 - 2 * 8 * 2) & (counts <= 38 * 4)).all()


def test_small_images_fall_back_to_single_patches() -> None:
    assert coarse_scale(16, 32, (2, 2)) == 1  # 32 px image: a 1x1 coarse grid would mask all or nothing
    mask = random_block_mask(3, (2, 2), patch_size=16, mask_ratio=0.6)
    assert mask.sum(dim=1).tolist() == [2, 2, 2]  # round(0.6 * 4)


def test_seeded_and_per_sample() -> None:
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = random_block_mask(6, (8, 8), 16, generator=g1)
    b = random_block_mask(6, (8, 8), 16, generator=g2)
    assert torch.equal(a, b)
    assert len({tuple(row.tolist()) for row in a}) > 1  # samples get different masks


def test_ratio_is_validated_and_clamped() -> None:
    with pytest.raises(ValueError, match="mask_ratio"):
        random_block_mask(1, (4, 4), 16, mask_ratio=0.0)
    assert random_block_mask(1, (4, 4), 16, mask_ratio=1.0).all()
    assert random_block_mask(1, (4, 4), 16, mask_patch_size=16, mask_ratio=0.01).sum() == 1


# -- patch layout and per-patch normalisation, against hand computations ------------------------------
def test_patchify_orders_values_by_row_then_column_then_channel() -> None:
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)  # channel 0: 0..15, 1: 16..31
    patches = patchify(x, 2)
    assert patches.shape == (1, 4, 8)
    # patch 0 covers rows 0-1, columns 0-1: (0,0) of both channels, then (0,1), (1,0), (1,1)
    assert patches[0, 0].tolist() == [0, 16, 1, 17, 4, 20, 5, 21]
    # patch 3 (grid row 1, column 1) covers rows 2-3, columns 2-3
    assert patches[0, 3].tolist() == [10, 26, 11, 27, 14, 30, 15, 31]


def test_patchify_matches_slicing_every_patch_and_unpatchify_inverts_it() -> None:
    x = torch.randn(2, 3, 8, 12)
    patches = patchify(x, 4)
    assert patches.shape == (2, 6, 48)
    for b in range(2):
        for i in range(2):
            for j in range(3):
                square = x[b, :, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4]  # (C, p, p)
                assert torch.equal(patches[b, i * 3 + j], square.permute(1, 2, 0).reshape(-1))
    assert torch.equal(unpatchify(patches, 4, (2, 3), 3), x)


def test_pixel_mask_covers_the_pixels_of_masked_patches() -> None:
    mask = torch.tensor([[True, False, False, True, False, False]])  # grid 2 x 3, patches 0 and 3
    m = pixel_mask(mask, (2, 3), 2)
    expected = torch.zeros(1, 1, 4, 6)
    expected[0, 0, 0:2, 0:2] = 1  # patch 0: grid row 0, column 0
    expected[0, 0, 2:4, 0:2] = 1  # patch 3: grid row 1, column 0
    assert torch.equal(m, expected)


def test_normalising_one_patch_by_hand() -> None:
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[10.0, 10.0], [10.0, 30.0]]]])  # (1, 2, 2, 2), one patch
    per_channel = normalize_patches(x, 2, per_channel=True)
    # channel 0: mean 2.5, population variance 1.25; channel 1: mean 15, variance 75
    expected0 = (torch.tensor([[1.0, 2.0], [3.0, 4.0]]) - 2.5) / math.sqrt(1.25 + 1e-6)
    expected1 = (torch.tensor([[10.0, 10.0], [10.0, 30.0]]) - 15.0) / math.sqrt(75.0 + 1e-6)
    torch.testing.assert_close(per_channel[0, 0], expected0)
    torch.testing.assert_close(per_channel[0, 1], expected1)
    # over the whole patch: the 8 values 1, 2, 3, 4, 10, 10, 10, 30 have mean 8.75
    values = [1.0, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 30.0]
    mean = sum(values) / 8
    var = sum((v - mean) ** 2 for v in values) / 8
    whole = normalize_patches(x, 2, per_channel=False)
    torch.testing.assert_close(whole, (x - mean) / math.sqrt(var + 1e-6))


@pytest.mark.parametrize("per_channel", [True, False])
def test_normalisation_of_every_patch_matches_numpy(per_channel: bool) -> None:
    x = torch.randn(2, 3, 8, 12, dtype=torch.float64) * 3 + 1
    got = normalize_patches(x, 4, per_channel=per_channel).numpy()
    data = x.numpy()
    expected = np.empty_like(data)
    for b in range(2):
        for i in range(2):
            for j in range(3):
                rows, cols = slice(4 * i, 4 * i + 4), slice(4 * j, 4 * j + 4)
                square = data[b, :, rows, cols]
                axes = (1, 2) if per_channel else (0, 1, 2)
                mean = square.mean(axis=axes, keepdims=True)
                std = np.sqrt(square.var(axis=axes, keepdims=True) + 1e-6)
                expected[b, :, rows, cols] = (square - mean) / std
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    back = denormalize_patches(torch.from_numpy(got), x, 4, per_channel=per_channel)
    torch.testing.assert_close(back, x.float(), rtol=1e-5, atol=1e-5)


def test_patch_layout_needs_sizes_that_are_multiples_of_the_patch() -> None:
    with pytest.raises(ValueError, match="image size 8x10 is not a multiple of the patch size 4"):
        patchify(torch.zeros(1, 1, 8, 10), 4)
    with pytest.raises(ValueError, match="not a multiple of the patch size"):
        normalize_patches(torch.zeros(1, 1, 6, 8), 4, per_channel=True)
