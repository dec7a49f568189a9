"""Results rows, seed aggregates and the paper's tables, checked against hand-computed values."""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import pytest

from mtl_hf.evaluation import (
    AggregateRow,
    ComparisonRow,
    ResultRow,
    aggregate_over_seeds,
    align_by_sample_id,
    compare_scores,
    evaluate_scores,
    read_rows_csv,
    render_markdown,
    render_text,
    summarize_comparisons,
    write_results,
)
from mtl_hf.evaluation.tables import format_p_value

# (strategy, sampling, seed, roc_auc, low, high, delong_low, delong_high): Table 2 of the paper, two seeds.
TABLE_2 = [
    ("stl", "all", 0, 0.70, 0.68, 0.71, 0.685, 0.715),
    ("stl", "all", 1, 0.72, 0.70, 0.73, 0.695, 0.745),
    ("mtl", "all", 0, 0.71, 0.71, 0.71, 0.70, 0.72),
    ("mtl", "all", 1, 0.71, 0.71, 0.71, 0.70, 0.72),
    ("stl", "undersample", 0, 0.69, 0.66, 0.72, 0.66, 0.72),
    ("stl", "undersample", 1, 0.71, 0.68, 0.74, 0.68, 0.74),
    ("mtl", "undersample", 0, 0.70, 0.67, 0.73, 0.67, 0.73),
    ("mtl", "undersample", 1, 0.72, 0.69, 0.75, 0.69, 0.75),
]


def _rows() -> list[ResultRow]:
    return [
        ResultRow(
            strategy=strategy,
            weighting="fixed" if strategy == "mtl" else "none",
            sampling=sampling,
            train_fraction=1.0,
            seed=seed,
            task="tumour",
            roc_auc=auc,
            low=low,
            high=high,
            delong_low=d_low,
            delong_high=d_high,
            n_test=500,
            n_patients=25,
        )
        for strategy, sampling, seed, auc, low, high, d_low, d_high in TABLE_2
    ]


def _comparisons() -> list[ComparisonRow]:
    def row(sampling: str, seed: int, delta: float, p: float) -> ComparisonRow:
        return ComparisonRow(
            task="tumour",
            sampling=sampling,
            train_fraction=1.0,
            seed=seed,
            model_a="mtl",
            model_b="stl",
            auc_a=0.7 + delta,
            auc_b=0.7,
            delta=delta,
            delong_low=delta - 0.02,
            delong_high=delta + 0.02,
            delong_p=p,
            bootstrap_low=delta - 0.025,
            bootstrap_high=delta + 0.025,
            bootstrap_p=p * 1.1,
            n_test=500,
        )

    return [
        row("all", 0, 0.01, 0.04),
        row("all", 1, -0.01, 0.5),
        row("undersample", 0, 0.01, 0.0004),
        row("undersample", 1, 0.03, 0.02),
    ]


def test_aggregates_equal_hand_computed_means_and_sds() -> None:
    aggregates = aggregate_over_seeds(_rows())
    order = [(a.strategy, a.sampling) for a in aggregates]
    assert order == [("stl", "all"), ("mtl", "all"), ("stl", "undersample"), ("mtl", "undersample")]
    stl_all = aggregates[0]
    assert stl_all.n_seeds == 2 and stl_all.seeds == (0, 1)
    assert stl_all.roc_auc_mean == pytest.approx(0.71)
    assert stl_all.roc_auc_sd == pytest.approx(math.sqrt(((0.70 - 0.71) ** 2 + (0.72 - 0.71) ** 2) / 1))
    assert (stl_all.low_mean, stl_all.high_mean) == pytest.approx((0.69, 0.72))
    assert (stl_all.delong_low_mean, stl_all.delong_high_mean) == pytest.approx((0.69, 0.73))
    assert aggregates[1].roc_auc_sd == pytest.approx(0.0, abs=1e-15)
    assert aggregates[3].roc_auc_mean == pytest.approx(0.71)
    assert all(a.n_test == 500 for a in aggregates)


def test_single_seed_has_no_sd_and_duplicate_seeds_are_refused() -> None:
    (single,) = aggregate_over_seeds(_rows()[:1])
    assert single.n_seeds == 1 and math.isnan(single.roc_auc_sd)
    with pytest.raises(ValueError, match="rows: seed listed twice"):
        aggregate_over_seeds(_rows()[:1] * 2)


def test_comparison_summary_by_hand() -> None:
    summaries = summarize_comparisons(_comparisons())
    assert [(s.sampling, s.n_seeds) for s in summaries] == [("all", 2), ("undersample", 2)]
    assert summaries[0].delta_mean == pytest.approx(0.0, abs=1e-15)
    assert summaries[1].delta_mean == pytest.approx(0.02)
    assert summaries[1].delta_sd == pytest.approx(math.sqrt(2 * 0.01**2))
    assert (summaries[0].n_significant, summaries[1].n_significant) == (1, 2)


EXPECTED_RESULTS_TABLE = """\
| Strategy | Sampling | ROC-AUC | Lower bound | Upper bound | DeLong 95% CI | Mean ± sd (seeds) |
| --- | --- | ---: | ---: | ---: | ---: | ---: |
| STL | All data | 0.710 | 0.690 | 0.720 | [0.690, 0.730] | 0.710 ± 0.014 (n=2) |
| MTL | All data | 0.710 | 0.710 | 0.710 | [0.700, 0.720] | 0.710 ± 0.000 (n=2) |
| STL | Under sampled | 0.700 | 0.670 | 0.730 | [0.670, 0.730] | 0.700 ± 0.014 (n=2) |
| MTL | Under sampled | 0.710 | 0.680 | 0.740 | [0.680, 0.740] | 0.710 ± 0.014 (n=2) |"""

EXPECTED_COMPARISONS = """\
| Comparison | Sampling | Seed | ΔAUC | 95% CI (DeLong) | p (DeLong) | 95% CI (bootstrap) | p (bootstrap) |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |
| MTL vs STL | All data | 0 | +0.010 | [-0.010, +0.030] | 0.040 | [-0.015, +0.035] | 0.044 |
| MTL vs STL | All data | 1 | -0.010 | [-0.030, +0.010] | 0.500 | [-0.035, +0.015] | 0.550 |
| MTL vs STL | Under sampled | 0 | +0.010 | [-0.010, +0.030] | <0.001 | [-0.015, +0.035] | <0.001 |
| MTL vs STL | Under sampled | 1 | +0.030 | [+0.010, +0.050] | 0.020 | [+0.005, +0.055] | 0.022 |"""

EXPECTED_SUMMARY = """\
| Comparison | Sampling | Seeds | ΔAUC mean ± sd | Seeds with p < 0.05 |
| --- | --- | ---: | ---: | ---: |
| MTL vs STL | All data | 2 | +0.000 ± 0.014 | 1/2 |
| MTL vs STL | Under sampled | 2 | +0.020 ± 0.014 | 2/2 |"""


def test_markdown_has_the_papers_columns_and_hand_computed_cells() -> None:
    markdown = render_markdown(_rows(), _comparisons(), title="BraTS")
    assert markdown.startswith("# BraTS\n")
    assert "## Task: tumour\n\n" + EXPECTED_RESULTS_TABLE + "\n" in markdown
    assert "## Paired comparisons, task: tumour\n\n" + EXPECTED_COMPARISONS + "\n" in markdown
    assert "## Comparisons over seeds, task: tumour\n\n" + EXPECTED_SUMMARY + "\n" in markdown


def test_tables_do_not_depend_on_row_order() -> None:
    rows, comparisons = _rows(), _comparisons()
    expected_md, expected_text = render_markdown(rows, comparisons), render_text(rows, comparisons)
    rng = random.Random(0)
    for _ in range(3):
        rng.shuffle(rows)
        rng.shuffle(comparisons)
        assert render_markdown(rows, comparisons) == expected_md
        assert render_text(rows, comparisons) == expected_text


def test_varying_weighting_and_fraction_get_their_own_columns() -> None:
    rows = _rows()[:4] + [
        dataclasses.replace(r, weighting="uncertainty", train_fraction=0.25) for r in _rows()[2:4]
    ]
    markdown = render_markdown(rows)
    assert "| MTL | fixed | All data | 1 | 0.710 |" in markdown
    assert "| Strategy | Weighting | Sampling | Train fraction | ROC-AUC |" in markdown
    assert "| STL | none | All data | 1 | 0.710 |" in markdown
    assert "| MTL | uncertainty | All data | 0.25 | 0.710 |" in markdown


def test_text_table_is_aligned() -> None:
    text = render_text(_rows(), _comparisons())
    blocks = text.strip().split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == [
        "Task: tumour",
        "Paired comparisons, task: tumour",
        "Comparisons over seeds, task: tumour",
    ]
    for block in blocks:
        lines = block.splitlines()[1:]
        assert len({len(line) for line in lines}) == 1, block
    first = blocks[0].splitlines()
    assert first[3].split() == [
        "STL",
        "All",
        "data",
        "0.710",
        "0.690",
        "0.720",
        "[0.690,",
        "0.730]",
        "0.710",
        "±",
        "0.014",
        "(n=2)",
    ]


def _same(a: object, b: object) -> bool:
    for field in dataclasses.fields(a):  # type: ignore[arg-type]
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, float) and math.isnan(x):
            if not (isinstance(y, float) and math.isnan(y)):
                return False
        elif x != y:
            return False
    return True


def test_write_results_files_round_trip(tmp_path) -> None:
    rows, comparisons = _rows(), _comparisons()
    files = write_results(tmp_path / "study", list(reversed(rows)), comparisons, title="BraTS")
    assert files.markdown.read_text(encoding="utf-8") == render_markdown(rows, comparisons, title="BraTS")
    back = read_rows_csv(files.results_csv, ResultRow)
    # Written in table order (sampling, strategy, seed) whatever the input order.
    assert [(r.strategy, r.sampling, r.seed) for r in back] == [
        ("stl", "all", 0),
        ("stl", "all", 1),
        ("mtl", "all", 0),
        ("mtl", "all", 1),
        ("stl", "undersample", 0),
        ("stl", "undersample", 1),
        ("mtl", "undersample", 0),
        ("mtl", "undersample", 1),
    ]
    by_key = {(r.strategy, r.sampling, r.seed): r for r in rows}
    assert all(_same(r, by_key[(r.strategy, r.sampling, r.seed)]) for r in back)
    summary = read_rows_csv(files.summary_csv, AggregateRow)
    assert all(_same(a, b) for a, b in zip(summary, aggregate_over_seeds(rows), strict=True))
    assert files.comparisons_csv is not None
    assert len(read_rows_csv(files.comparisons_csv, ComparisonRow)) == 4
    header = files.results_csv.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header[:12] == [
        "strategy",
        "weighting",
        "sampling",
        "train_fraction",
        "seed",
        "task",
        "roc_auc",
        "low",
        "high",
        "delong_low",
        "delong_high",
        "n_test",
    ]


def test_bad_csv_names_file_line_and_column(tmp_path) -> None:
    path = write_results(tmp_path, _rows()).results_csv
    text = path.read_text(encoding="utf-8").splitlines()
    text[2] = text[2].replace("0.7", "oops", 1)
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"results\.csv:3: column 'roc_auc': bad value"):
        read_rows_csv(path, ResultRow)


def test_rows_from_metric_outputs_and_comparisons() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    a, b = rng.normal(size=60) + y, rng.normal(size=60) + 0.5 * y
    patients = [f"p{i // 2}" for i in range(60)]
    metrics = evaluate_scores(y, a, groups=patients, n_resamples=200, threshold=0.5).to_dict()
    row = ResultRow.from_metrics(
        metrics, strategy="mtl", weighting="fixed", sampling="all", train_fraction=1.0, seed=0, task="tumour"
    )
    assert (row.roc_auc, row.low, row.high) == (
        metrics["roc_auc"],
        metrics["roc_auc_low"],
        metrics["roc_auc_high"],
    )
    assert (row.delong_low, row.delong_high) == (
        metrics["roc_auc_delong_low"],
        metrics["roc_auc_delong_high"],
    )
    assert (row.n_test, row.n_patients, row.sensitivity) == (60, 30, metrics["sensitivity"])
    with pytest.raises(ValueError, match="metrics: task 'tumour' lacks roc_auc_low"):
        ResultRow.from_metrics(
            {"roc_auc": 0.7, "roc_auc_high": 0.8},
            strategy="mtl",
            weighting="fixed",
            sampling="all",
            train_fraction=1.0,
            seed=0,
            task="tumour",
        )
    comparison = compare_scores(y, a, b, groups=patients, n_resamples=200)
    crow = ComparisonRow.from_comparison(
        comparison, task="tumour", sampling="all", train_fraction=1.0, seed=0, model_a="mtl", model_b="stl"
    )
    assert crow.delta == pytest.approx(comparison.auc_a - comparison.auc_b)
    assert crow.delong_p == comparison.delong.p_value and crow.bootstrap_p == comparison.bootstrap.p_value


def test_p_value_format() -> None:
    assert [format_p_value(p) for p in (0.0004, 0.001, 0.0456, 1.0, float("nan"))] == [
        "<0.001",
        "0.001",
        "0.046",
        "1.000",
        "–",
    ]


def test_align_by_sample_id_pairs_two_prediction_files() -> None:
    ids_a = ["p1/s3", "p1/s4", "p2/s1", "p3/s9"]
    ids_b = ["p2/s1", "p3/s9", "p1/s4", "p1/s3"]
    order = align_by_sample_id(ids_a, ids_b)
    assert [ids_b[i] for i in order] == ids_a
    with pytest.raises(ValueError, match="ids_b: the two runs were scored on different samples"):
        align_by_sample_id(ids_a, ["p2/s1", "p3/s9", "p1/s4", "p9/s9"])
    with pytest.raises(ValueError, match="ids_a: sample id 'x' occurs more than once"):
        align_by_sample_id(["x", "x"], ["x", "y"])
