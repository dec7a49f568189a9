"""SimMIM block masks: exact counts, block structure, patch sizes that do not divide 32, tiny images."""

from __future__ import annotations

import pytest
import torch

from mtl_hf.masking import coarse_scale, random_block_mask


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
