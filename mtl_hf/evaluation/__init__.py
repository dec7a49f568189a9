"""Evaluation: ROC AUC with patient-level confidence intervals, paired model comparisons, tables, plots.

The statistics (:func:`evaluate_scores`, :func:`compare_scores` and the pieces they are made of) are
also shipped as the 🤗 evaluate module ``mtl_roc_auc``, loaded offline by path with :func:`load_metric`.
Result rows of many runs become the paper's tables (:func:`write_results`, :func:`render_text`) and
figures (:func:`plot_auc_intervals`, :func:`plot_low_data`, :func:`plot_roc_curves`). The low-data study
(:func:`low_data_study`) pools seeds per strategy and training fraction, with patient intervals of the
seed mean and paired differences, rendered in words by :func:`low_data_markdown`. Metrics of other
heads (segmentation Dice) get the same patient-level intervals from :func:`bootstrap_additive_metrics`.
"""

from .additive import (
    MetricInterval,
    PairedMetricInterval,
    Resampling,
    bootstrap_additive_metrics,
    paired_bootstrap_additive_metrics,
)
from .bootstrap import (
    BootstrapResult,
    PairedBootstrapResult,
    bootstrap_roc_auc,
    group_resamples,
    paired_bootstrap_roc_auc,
    weighted_roc_auc,
)
from .delong import (
    DeLongEstimate,
    DeLongInterval,
    DeLongTest,
    delong_covariance,
    delong_interval,
    delong_test,
)
from .inputs import BinaryColumns, group_codes, to_binary_columns
from .loading import load_metric, metric_path
from .low_data import (
    CurveDifference,
    CurvePoint,
    RunScores,
    low_data_study,
    model_label,
    seed_mean_auc,
    seed_mean_difference,
)
from .low_data_report import low_data_findings, low_data_markdown, low_data_tables
from .plots import PlotData, plot_auc_intervals, plot_low_data, plot_roc_curves
from .report import PairedComparison, ROCAUCReport, align_by_sample_id, compare_scores, evaluate_scores
from .results import (
    AggregateRow,
    ComparisonRow,
    ComparisonSummary,
    ResultRow,
    aggregate_over_seeds,
    read_rows_csv,
    summarize_comparisons,
    write_rows_csv,
)
from .tables import ResultsFiles, format_p_value, render_markdown, render_text, write_results
from .threshold import ThresholdMetrics, choose_threshold, threshold_metrics

__all__ = [
    "AggregateRow",
    "BinaryColumns",
    "BootstrapResult",
    "ComparisonRow",
    "ComparisonSummary",
    "CurveDifference",
    "CurvePoint",
    "DeLongEstimate",
    "DeLongInterval",
    "DeLongTest",
    "MetricInterval",
    "PairedBootstrapResult",
    "PairedComparison",
    "PairedMetricInterval",
    "PlotData",
    "ROCAUCReport",
    "Resampling",
    "ResultRow",
    "ResultsFiles",
    "RunScores",
    "ThresholdMetrics",
    "aggregate_over_seeds",
    "align_by_sample_id",
    "bootstrap_additive_metrics",
    "bootstrap_roc_auc",
    "choose_threshold",
    "compare_scores",
    "delong_covariance",
    "delong_interval",
    "delong_test",
    "evaluate_scores",
    "format_p_value",
    "group_codes",
    "group_resamples",
    "load_metric",
    "low_data_findings",
    "low_data_markdown",
    "low_data_study",
    "low_data_tables",
    "metric_path",
    "model_label",
    "paired_bootstrap_additive_metrics",
    "paired_bootstrap_roc_auc",
    "plot_auc_intervals",
    "plot_low_data",
    "plot_roc_curves",
    "read_rows_csv",
    "render_markdown",
    "render_text",
    "seed_mean_auc",
    "seed_mean_difference",
    "summarize_comparisons",
    "threshold_metrics",
    "to_binary_columns",
    "weighted_roc_auc",
    "write_results",
    "write_rows_csv",
]
