"""Localization scores: by hand on constructed maps, against pixel-level sklearn, and end to end on a
real tiny model whose attention is set by its weights."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score

from mtl_hf.explain import (
    attention_in_lesion,
    attention_localization,
    bootstrap_mean,
    lesion_fraction,
    pixel_roc_auc,
    pointing_game,
    write_localization_table,
)
from tests.explain.forced_model import bright_image, forced_attention_model


def test_scores_by_hand() -> None:
    # 2x2 grid of 4-px patches; the lesion covers the whole top-left patch and half of the top-right one.
    mask = torch.zeros(1, 8, 8)
    mask[0, :4, :4] = 1
    mask[0, :4, 4:6] = 1
    fraction = lesion_fraction(mask, 4)
    assert fraction[0].tolist() == [[1.0, 0.5], [0.0, 0.0]]
    maps = torch.tensor([[[0.1, 0.2], [0.3, 0.4]]])
    assert attention_in_lesion(maps, fraction).item() == pytest.approx(0.1 * 1 + 0.2 * 0.5)
    assert pointing_game(maps, fraction).item() == 0.0  # the maximum is the bottom-right patch
    assert pointing_game(torch.tensor([[[0.1, 0.6], [0.2, 0.1]]]), fraction).item() == 1.0  # touches it
    # Pixels: lesion = 16 at 0.1, 8 at 0.2; background = 8 at 0.2, 16 at 0.3, 16 at 0.4.
    # P(lesion > background) + 0.5 P(tie) over 24 x 40 pairs:
    wins = 16 * 0 + 8 * 0 + 0.5 * 8 * 8
    assert pixel_roc_auc(maps, fraction, 4)[0] == pytest.approx(wins / (24 * 40))


def test_pixel_auc_equals_sklearn_on_pixels() -> None:
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(5, 4, 4, generator=g)
    maps[0, 1, 1] = maps[0, 2, 2]  # a tie
    masks = torch.rand(5, 32, 32, generator=g) > 0.7
    masks[4] = False
    masks[4, 3:9, 20:31] = True
    got = pixel_roc_auc(maps, lesion_fraction(masks, 8), 8)
    for i in range(5):
        pixel_scores = maps[i].repeat_interleave(8, 0).repeat_interleave(8, 1)
        assert got[i] == pytest.approx(
            roc_auc_score(masks[i].flatten().numpy(), pixel_scores.flatten().numpy())
        )
    whole = torch.ones(1, 8, 8)
    assert np.isnan(pixel_roc_auc(maps[:1, :2, :2], lesion_fraction(whole, 4), 4)[0])


def test_bootstrap_without_groups_agrees_with_scipy() -> None:
    values = np.random.default_rng(0).normal(0.4, 0.2, 300)
    ours = bootstrap_mean(values, n_resamples=4000, seed=1)
    ref = stats.bootstrap((values,), np.mean, n_resamples=4000, method="percentile", random_state=2)
    assert ours.mean == pytest.approx(values.mean())
    assert ours.low == pytest.approx(ref.confidence_interval.low, abs=0.005)
    assert ours.high == pytest.approx(ref.confidence_interval.high, abs=0.005)
    assert (ours.n, ours.n_groups) == (300, 300)


def test_bootstrap_resamples_patients_not_slices() -> None:
    # Two patients, 50 slices each, all 0 for one and all 1 for the other: only two independent units.
    values = np.r_[np.zeros(50), np.ones(50)]
    groups = ["a"] * 50 + ["b"] * 50
    by_patient = bootstrap_mean(values, groups, n_resamples=2000)
    by_slice = bootstrap_mean(values, n_resamples=2000)
    assert by_patient.n_groups == 2 and by_patient.mean == 0.5
    assert (by_patient.low, by_patient.high) == (0.0, 1.0)  # resampling 2 patients: 0, 0.5 or 1
    assert by_slice.high - by_slice.low < 0.25
    constant = bootstrap_mean([0.3, 0.3, np.nan], ["a", "b", "c"])
    assert (constant.mean, constant.low, constant.high, constant.n) == (0.3, 0.3, 0.3, 2)


BRIGHT = {0: [(0, 0), (0, 1)], 1: [(3, 3)], 2: [(1, 1), (2, 2)], 3: [(0, 3)]}


def forced_batches() -> list[dict]:
    """Two batches of two images; image 3 has no lesion (it is left out)."""
    masks = torch.zeros(4, 64, 64, dtype=torch.uint8)
    masks[0, :16, :16] = 1  # all of patch (0, 0): one of the two bright patches
    masks[1, 48:, 48:56] = 1  # half of patch (3, 3), the only bright one
    masks[2, 32:48, 0:16] = 1  # patch (2, 0): not bright
    images = torch.stack([bright_image(BRIGHT[i]) for i in range(4)])
    ids = ["p1", "p1", "p2", "p3"]
    return [
        {"pixel_values": images[:2], "lesion_mask": masks[:2], "patient_id": ids[:2], "labels": {}},
        {"pixel_values": images[2:], "lesion_mask": masks[2:], "patient_id": ids[2:], "labels": {}},
    ]


def auc_two_levels(t: float, u: float) -> float:
    """AUC when a share t of lesion pixels and u of background pixels get the high score, the rest the low."""
    return t * (1 - u) + 0.5 * (t * u + (1 - t) * (1 - u))


def test_attention_localization_end_to_end(tmp_path: Path) -> None:
    model = forced_attention_model()
    rows = attention_localization({"forced": model}, forced_batches(), maps=["mean"], n_resamples=200)
    table = {(r.model, r.metric): r for r in rows}
    share = [0.5, 0.5, 0.0]  # image 0: half the mass on the lesion patch; 1: all mass on a half-lesion patch
    assert table["forced", "attention_in_lesion"].value == pytest.approx(np.mean(share), abs=1e-6)
    assert table["forced", "pointing_game"].value == pytest.approx(2 / 3)  # ties go to the first bright patch
    lesion_px, background = [256, 128, 256], 64 * 64 - np.array([256, 128, 256])
    auc = [
        auc_two_levels(1.0, 256 / background[0]),
        auc_two_levels(1.0, 128 / background[1]),
        auc_two_levels(0.0, 512 / background[2]),
    ]
    assert table["forced", "pixel_roc_auc"].value == pytest.approx(np.mean(auc), abs=1e-6)
    for r in rows:
        assert (r.n_images, r.n_patients) == (3, 2)  # p3's only image has no lesion
        assert r.ci_low <= r.value + 1e-9 and r.value <= r.ci_high + 1e-9
    assert table["chance", "attention_in_lesion"].value == pytest.approx(np.mean(np.array(lesion_px) / 4096))
    assert table["chance", "pointing_game"].value == pytest.approx(np.mean([1, 1, 1]) / 16)
    assert table["chance", "pixel_roc_auc"].value == 0.5
    assert [r.model for r in rows][-3:] == ["chance"] * 3

    paths = write_localization_table(rows, tmp_path)
    written = list(csv.DictReader(paths["csv"].read_text().splitlines()))
    assert len(written) == len(rows) and written[0]["model"] == "forced"
    assert float(written[0]["value"]) == pytest.approx(rows[0].value)
    markdown = paths["markdown"].read_text()
    assert (
        "| forced | mean |" in markdown
        and "| chance | - |" in markdown
        and "pointing game (95% CI)" in markdown
    )


def test_a_map_style_dataset_gives_the_same_rows() -> None:
    model = forced_attention_model()
    batches = forced_batches()
    samples = [
        {
            "pixel_values": b["pixel_values"][i],
            "lesion_mask": b["lesion_mask"][i],
            "patient_id": b["patient_id"][i],
        }
        for b in batches
        for i in range(2)
    ]

    class Slices(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(samples)

        def __getitem__(self, i: int) -> dict:
            return samples[i]

    a = attention_localization({"m": model}, batches, n_resamples=100, progress=False)
    b = attention_localization({"m": model}, Slices(), batch_size=3, n_resamples=100, progress=False)
    assert [(r.metric, r.map, round(r.value, 6), r.n_patients) for r in a] == [
        (r.metric, r.map, round(r.value, 6), r.n_patients) for r in b
    ]


def test_missing_masks_are_refused() -> None:
    model = forced_attention_model()
    with pytest.raises(ValueError, match="batch has no 'lesion_mask'"):
        attention_localization({"m": model}, [{"pixel_values": torch.zeros(1, 3, 64, 64)}])
    empty = {"pixel_values": torch.zeros(1, 3, 64, 64), "lesion_mask": torch.zeros(1, 64, 64)}
    with pytest.raises(ValueError, match="no image with a lesion"):
        attention_localization({"m": model}, [empty])
