"""The paper's tables from result rows: Markdown for ``results.md``, aligned text for the terminal, CSV.

Columns follow the paper's Table 2 (Strategy | Sampling | ROC-AUC | Lower bound | Upper bound), with
DeLong's interval and the mean +/- sd over seeds added. A Weighting column appears only when one
strategy was run with several weightings, a Train fraction column only when fractions vary, so a plain
STL / MTL study keeps the paper's shape. Paired comparisons
follow, one line per seed, then their summary over seeds. The same cell strings feed Markdown and text,
so the two never disagree, and every number is formatted with a fixed number of decimals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .results import (
    AggregateRow,
    ComparisonRow,
    ComparisonSummary,
    ResultRow,
    aggregate_over_seeds,
    comparison_sort_key,
    result_sort_key,
    sampling_label,
    strategy_label,
    summarize_comparisons,
    write_rows_csv,
)

DASH = "–"


@dataclass(frozen=True)
class Table:
    """A titled table of already formatted cells."""

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class ResultsFiles:
    """Paths written by :func:`write_results`."""

    results_csv: Path
    summary_csv: Path
    comparisons_csv: Path | None
    markdown: Path


def _number(value: float, decimals: int) -> str:
    return DASH if math.isnan(value) else f"{value:.{decimals}f}"


def _signed(value: float, decimals: int) -> str:
    return DASH if math.isnan(value) else f"{value:+.{decimals}f}"


def _interval(low: float, high: float, decimals: int, signed: bool = False) -> str:
    if math.isnan(low) or math.isnan(high):
        return DASH
    fmt = _signed if signed else _number
    return f"[{fmt(low, decimals)}, {fmt(high, decimals)}]"


def format_p_value(p: float) -> str:
    """``"<0.001"`` below one in a thousand, else three decimals; a dash for NaN."""
    if math.isnan(p):
        return DASH
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _fraction(value: float) -> str:
    return f"{value:g}"


def _level(confidence_level: float) -> str:
    return f"{confidence_level * 100:g}%"


def _varies(values: Iterable[object]) -> bool:
    return len(set(values)) > 1


def results_tables(aggregates: Sequence[AggregateRow], decimals: int = 3) -> list[Table]:
    """One table per task from seed aggregates (see :func:`aggregate_over_seeds`), in sorted order."""
    tables = []
    for task in sorted({a.task for a in aggregates}):
        rows = [a for a in aggregates if a.task == task]
        # Weighting tells models apart only when one strategy was run with several weightings.
        show_weighting = len({(a.strategy, a.weighting) for a in rows}) > len({a.strategy for a in rows})
        show_fraction = _varies(a.train_fraction for a in rows)
        level = _level(rows[0].confidence_level)
        header = ["Strategy"]
        header += ["Weighting"] if show_weighting else []
        header += ["Sampling"]
        header += ["Train fraction"] if show_fraction else []
        header += ["ROC-AUC", "Lower bound", "Upper bound", f"DeLong {level} CI", "Mean ± sd (seeds)"]
        cells = []
        for a in rows:
            line = [strategy_label(a.strategy)]
            line += [a.weighting] if show_weighting else []
            line += [sampling_label(a.sampling)]
            line += [_fraction(a.train_fraction)] if show_fraction else []
            spread = (
                f"{_number(a.roc_auc_mean, decimals)} (n=1)"
                if a.n_seeds == 1
                else f"{_number(a.roc_auc_mean, decimals)} ± {_number(a.roc_auc_sd, decimals)} (n={a.n_seeds})"
            )
            line += [
                _number(a.roc_auc_mean, decimals),
                _number(a.low_mean, decimals),
                _number(a.high_mean, decimals),
                _interval(a.delong_low_mean, a.delong_high_mean, decimals),
                spread,
            ]
            cells.append(tuple(line))
        tables.append(Table(f"Task: {task}", tuple(header), tuple(cells)))
    return tables


def comparison_tables(
    comparisons: Sequence[ComparisonRow],
    summaries: Sequence[ComparisonSummary] = (),
    decimals: int = 3,
) -> list[Table]:
    """Per task: the per-seed paired comparisons, then (if given) their summary over seeds."""
    tables = []
    tasks = sorted({c.task for c in comparisons} | {s.task for s in summaries})
    for task in tasks:
        rows = sorted((c for c in comparisons if c.task == task), key=comparison_sort_key)
        if rows:
            show_sampling = _varies(c.sampling for c in rows)
            show_fraction = _varies(c.train_fraction for c in rows)
            level = _level(rows[0].confidence_level)
            header = ["Comparison"]
            header += ["Sampling"] if show_sampling else []
            header += ["Train fraction"] if show_fraction else []
            header += [
                "Seed",
                "ΔAUC",
                f"{level} CI (DeLong)",
                "p (DeLong)",
                f"{level} CI (bootstrap)",
                "p (bootstrap)",
            ]
            cells = []
            for c in rows:
                line = [f"{strategy_label(c.model_a)} vs {strategy_label(c.model_b)}"]
                line += [sampling_label(c.sampling)] if show_sampling else []
                line += [_fraction(c.train_fraction)] if show_fraction else []
                line += [
                    str(c.seed),
                    _signed(c.delta, decimals),
                    _interval(c.delong_low, c.delong_high, decimals, signed=True),
                    format_p_value(c.delong_p),
                    _interval(c.bootstrap_low, c.bootstrap_high, decimals, signed=True),
                    format_p_value(c.bootstrap_p),
                ]
                cells.append(tuple(line))
            tables.append(Table(f"Paired comparisons, task: {task}", tuple(header), tuple(cells)))
        summary_rows = sorted((s for s in summaries if s.task == task), key=comparison_sort_key)
        if summary_rows:
            show_sampling = _varies(s.sampling for s in summary_rows)
            show_fraction = _varies(s.train_fraction for s in summary_rows)
            header = ["Comparison"]
            header += ["Sampling"] if show_sampling else []
            header += ["Train fraction"] if show_fraction else []
            header += ["Seeds", "ΔAUC mean ± sd", f"Seeds with p < {summary_rows[0].alpha:g}"]
            cells = []
            for s in summary_rows:
                line = [f"{strategy_label(s.model_a)} vs {strategy_label(s.model_b)}"]
                line += [sampling_label(s.sampling)] if show_sampling else []
                line += [_fraction(s.train_fraction)] if show_fraction else []
                spread = (
                    _signed(s.delta_mean, decimals)
                    if s.n_seeds == 1
                    else f"{_signed(s.delta_mean, decimals)} ± {_number(s.delta_sd, decimals)}"
                )
                line += [str(s.n_seeds), spread, f"{s.n_significant}/{s.n_seeds}"]
                cells.append(tuple(line))
            tables.append(Table(f"Comparisons over seeds, task: {task}", tuple(header), tuple(cells)))
    return tables


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def table_to_markdown(table: Table) -> str:
    """GitHub-flavoured Markdown table (text left-aligned, other columns right-aligned)."""
    align = ["---" if i == 0 or not _numeric_column(table, i) else "---:" for i in range(len(table.header))]
    lines = [
        "| " + " | ".join(_escape(h) for h in table.header) + " |",
        "| " + " | ".join(align) + " |",
    ]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def _numeric_column(table: Table, index: int) -> bool:
    return all(row[index][:1] in set("0123456789+-[<–") for row in table.rows)


def table_to_text(table: Table) -> str:
    """Aligned plain-text table for a terminal: a title, a header, a rule, the rows."""
    widths = [max(len(table.header[i]), *(len(r[i]) for r in table.rows)) for i in range(len(table.header))]
    numeric = [i > 0 and _numeric_column(table, i) for i in range(len(table.header))]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([table.title, line(table.header), rule, *(line(r) for r in table.rows)])


def render_markdown(
    rows: Sequence[ResultRow],
    comparisons: Sequence[ComparisonRow] = (),
    *,
    title: str = "Results",
    decimals: int = 3,
    alpha: float = 0.05,
) -> str:
    """The whole ``results.md``: results per task, then paired comparisons, with a note on the bounds."""
    aggregates = aggregate_over_seeds(rows)
    summaries = summarize_comparisons(comparisons, alpha=alpha)
    parts = [f"# {title}", ""]
    if aggregates:
        level = _level(aggregates[0].confidence_level)
        parts += [
            f"ROC-AUC is the test ROC AUC (mean over seeds). Lower / upper bound: {level} percentile bootstrap "
            "interval resampling patients, averaged over seeds. DeLong CI: DeLong's interval (clustered by "
            "patient when patient ids are known), averaged over seeds. Mean ± sd: spread over training seeds "
            "(sample sd).",
            "",
        ]
    for table in results_tables(aggregates, decimals):
        parts += [f"## {table.title}", "", table_to_markdown(table), ""]
    comparison_parts = comparison_tables(comparisons, summaries, decimals)
    if comparison_parts:
        parts += [
            "ΔAUC = AUC(first) − AUC(second) on the same test samples. DeLong: DeLong's test for two "
            "correlated ROC AUCs; bootstrap: paired bootstrap resampling patients.",
            "",
        ]
    for table in comparison_parts:
        parts += [f"## {table.title}", "", table_to_markdown(table), ""]
    return "\n".join(parts).rstrip() + "\n"


def render_text(
    rows: Sequence[ResultRow],
    comparisons: Sequence[ComparisonRow] = (),
    *,
    decimals: int = 3,
    alpha: float = 0.05,
) -> str:
    """The same tables as :func:`render_markdown`, aligned for a terminal."""
    tables = results_tables(aggregate_over_seeds(rows), decimals)
    tables += comparison_tables(comparisons, summarize_comparisons(comparisons, alpha=alpha), decimals)
    return "\n\n".join(table_to_text(t) for t in tables) + "\n"


def write_results(
    out_dir: str | Path,
    rows: Sequence[ResultRow],
    comparisons: Sequence[ComparisonRow] = (),
    *,
    title: str = "Results",
    decimals: int = 3,
    alpha: float = 0.05,
) -> ResultsFiles:
    """Write ``results.csv`` (one row per run and task), ``results_summary.csv`` (over seeds),
    ``comparisons.csv`` (if there are comparisons) and ``results.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_csv = write_rows_csv(sorted(rows, key=result_sort_key), out / "results.csv", ResultRow)
    summary_csv = write_rows_csv(aggregate_over_seeds(rows), out / "results_summary.csv", AggregateRow)
    comparisons_csv = (
        write_rows_csv(sorted(comparisons, key=comparison_sort_key), out / "comparisons.csv", ComparisonRow)
        if comparisons
        else None
    )
    markdown = out / "results.md"
    markdown.write_text(
        render_markdown(rows, comparisons, title=title, decimals=decimals, alpha=alpha), encoding="utf-8"
    )
    return ResultsFiles(results_csv, summary_csv, comparisons_csv, markdown)
