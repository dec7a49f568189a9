"""The low-data study: seed-mean AUC and paired differences against a direct computation with
scikit-learn on the same patient resamples; the study's rows, words and figure."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mtl_hf.evaluation import (
    CurveDifference,
    CurvePoint,
    RunScores,
    group_resamples,
    low_data_findings,
    low_data_markdown,
    low_data_study,
    plot_low_data,
    seed_mean_auc,
    seed_mean_difference,
)

PATIENTS = 30


def _runs(shift: float, n_seeds: int, seed: int) -> list[RunScores]:
    """Runs of one strategy on one test set: 30 patients x 6 slices, labels shared, scores per seed."""
    rng = np.random.default_rng(0)
    patients = np.repeat([f"p{i:02d}" for i in range(PATIENTS)], 6)
    labels = (rng.random(patients.size) < 0.4).astype(int)
    ids = np.array([f"s{i}" for i in range(patients.size)])
    noise = np.random.default_rng(seed)
    return [
        RunScores(ids, patients, labels, labels * shift + noise.normal(size=labels.size))
        for _ in range(n_seeds)
    ]


def _by_hand(runs_a: list[RunScores], runs_b: list[RunScores] | None, n_resamples: int, seed: int):
    """Seed-mean AUC (or difference) on every resample, with sklearn's weighted AUC: a patient drawn
    k times weighs k."""
    codes = {p: i for i, p in enumerate(dict.fromkeys(runs_a[0].patients))}
    sample_codes = np.array([codes[p] for p in runs_a[0].patients])
    values = []
    for block in group_resamples(len(codes), n_resamples, seed):
        for counts in block:
            weights = counts[sample_codes]

            def mean_auc(runs: list[RunScores], w: np.ndarray = weights) -> float:
                return float(np.mean([roc_auc_score(r.references, r.scores, sample_weight=w) for r in runs]))

            values.append(mean_auc(runs_a) - (mean_auc(runs_b) if runs_b else 0.0))
    return np.array(values)


def test_seed_mean_auc_is_the_mean_with_a_patient_bootstrap_of_it() -> None:
    runs = _runs(1.0, 3, seed=1)
    auc, low, high, sd = seed_mean_auc(runs, n_resamples=120, seed=7)
    per_seed = [roc_auc_score(r.references, r.scores) for r in runs]
    assert auc == pytest.approx(np.mean(per_seed))
    assert sd == pytest.approx(np.std(per_seed, ddof=1))
    hand = _by_hand(runs, None, 120, 7)
    assert (low, high) == pytest.approx(tuple(np.quantile(hand, [0.025, 0.975])))


def test_seed_mean_difference_is_paired_on_the_same_resamples() -> None:
    runs_a, runs_b = _runs(1.2, 3, seed=1), _runs(0.8, 2, seed=2)  # unequal numbers of seeds
    delta, low, high, p = seed_mean_difference(runs_a, runs_b, n_resamples=120, seed=3)
    aucs = [[roc_auc_score(r.references, r.scores) for r in runs] for runs in (runs_a, runs_b)]
    assert delta == pytest.approx(np.mean(aucs[0]) - np.mean(aucs[1]))
    hand = _by_hand(runs_a, runs_b, 120, 3)
    assert (low, high) == pytest.approx(tuple(np.quantile(hand, [0.025, 0.975])))
    assert p == pytest.approx(min(1.0, 2 * min(np.mean(hand <= 0), np.mean(hand >= 0))))


def test_runs_are_aligned_by_sample_id_and_must_share_samples_and_labels() -> None:
    runs = _runs(1.0, 2, seed=1)
    order = np.random.default_rng(5).permutation(len(runs[1].ids))
    shuffled = RunScores(
        runs[1].ids[order], runs[1].patients[order], runs[1].references[order], runs[1].scores[order]
    )
    assert seed_mean_auc([runs[0], shuffled], n_resamples=50) == pytest.approx(
        seed_mean_auc(runs, n_resamples=50)
    )
    other = RunScores(runs[1].ids[:-1], runs[1].patients[:-1], runs[1].references[:-1], runs[1].scores[:-1])
    with pytest.raises(ValueError, match=r"runs\[1\]\.ids: the two runs were scored on different samples"):
        seed_mean_auc([runs[0], other], n_resamples=50)
    flipped = RunScores(runs[1].ids, runs[1].patients, 1 - runs[1].references, runs[1].scores)
    with pytest.raises(ValueError, match=r"runs\[1\]: its test labels differ"):
        seed_mean_auc([runs[0], flipped], n_resamples=50)


def _study() -> tuple[list[CurvePoint], list[CurveDifference]]:
    scores = {}
    for fraction, gain in ((0.1, 0.4), (0.3, 0.8), (1.0, 1.6)):
        scores[("tumour", "stl", "all", fraction)] = _runs(gain, 2, seed=int(fraction * 10))
        scores[("tumour", "mtl", "all", fraction)] = _runs(gain + 0.3, 2, seed=int(fraction * 10) + 50)
    return low_data_study(
        scores, [("mtl", "stl")], train_patients={0.1: 4, 0.3: 12, 1.0: 40}, n_resamples=200
    )


def test_study_rows_pool_seeds_per_strategy_and_fraction() -> None:
    points, differences = _study()
    assert [(p.model, p.train_fraction) for p in points] == [
        ("stl", 0.1), ("mtl", 0.1), ("stl", 0.3), ("mtl", 0.3), ("stl", 1.0), ("mtl", 1.0)
    ]  # fmt: skip
    assert {p.n_seeds for p in points} == {2} and {p.n_patients for p in points} == {PATIENTS}
    assert [p.n_train_patients for p in points[::2]] == [4, 12, 40]
    by_key = {(p.model, p.train_fraction): p for p in points}
    for d in differences:
        a, b = by_key[(d.model_a, d.train_fraction)], by_key[(d.model_b, d.train_fraction)]
        assert d.delta == pytest.approx(a.roc_auc - b.roc_auc)
        assert d.low <= d.delta <= d.high
    assert [d.train_fraction for d in differences] == [0.1, 0.3, 1.0]


def test_findings_state_every_difference_and_count_significant_ones() -> None:
    points, differences = _study()
    text = "\n".join(low_data_findings(points, differences))
    for d in differences:
        assert f"{d.delta:+.3f}".replace("-", "−") in text
    n_higher = sum(d.delta > 0 for d in differences)
    assert f"MTL scored higher than STL at {n_higher} of 3 fractions" in text
    significant = [d for d in differences if d.p_value < 0.05]
    if significant:
        assert f"not at the {3 - len(significant)} other(s)" in text
    else:
        assert "no difference is significant" in text
    # Made-up rows exercise both verdicts.
    null = [CurveDifference("t", "all", f, "mtl", "stl", 3, -0.01, -0.05, 0.03, 0.6) for f in (0.1, 1.0)]
    pts = [
        CurvePoint("t", "all", f, m, 3, 0.8, 0.77, 0.83, 0.01, 100, 20)
        for f in (0.1, 1.0)
        for m in ("stl", "mtl")
    ]
    assert "MTL scored higher than STL at 0 of 2 fractions, and no difference is significant" in "\n".join(
        low_data_findings(pts, null)
    )
    mixed = [null[0], CurveDifference("t", "all", 1.0, "mtl", "stl", 3, -0.04, -0.07, -0.01, 0.01)]
    assert (
        "significant at the 0.05 level at fraction(s) 1 (STL higher), and not at the 1 other(s)"
        in "\n".join(low_data_findings(pts, mixed))
    )
    assert "Interval half-widths at the largest fraction (1): STL ±0.030, MTL ±0.030" in "\n".join(
        low_data_findings(pts, mixed)
    )
    markdown = low_data_markdown(points, differences, figures=["plots/low_data_tumour.png"])
    assert "| 0.3 | 12 |" in markdown and "![Low-data study](plots/low_data_tumour.png)" in markdown


def test_low_data_figure_draws_the_rows(tmp_path) -> None:
    points, differences = _study()
    data = plot_low_data(points, differences, tmp_path / "sub" / "low.png")
    assert data.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mtl = [p for p in points if p.model == "mtl"]
    np.testing.assert_allclose(data.series["MTL"]["x"], [0.1, 0.3, 1.0])
    np.testing.assert_allclose(data.series["MTL"]["auc"], [p.roc_auc for p in mtl])
    np.testing.assert_allclose(data.series["MTL"]["low"], [p.low for p in mtl])
    diff = data.series["MTL − STL"]
    np.testing.assert_allclose(diff["delta"], [d.delta for d in differences])
    np.testing.assert_allclose(diff["p"], [d.p_value for d in differences])
    with pytest.raises(ValueError, match="sampling: 'undersample' not in the results"):
        plot_low_data(points, differences, tmp_path / "x.png", sampling="undersample")
