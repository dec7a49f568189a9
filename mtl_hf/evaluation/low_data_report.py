"""The low-data study in words and tables, for ``results.md``, the terminal and the README.

Everything here is rendered from :class:`~mtl_hf.evaluation.low_data.CurvePoint` and
:class:`~mtl_hf.evaluation.low_data.CurveDifference` rows by fixed rules: the sentences state each
paired difference with its interval and p-value, count at how many fractions the first strategy
scored higher and at which ones the difference is significant, whichever way the numbers fall. No
sentence is chosen by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

from .low_data import CurveDifference, CurvePoint, model_label
from .results import SAMPLING_ORDER, rank_in, sampling_label
from .tables import Table, format_p_value, table_to_markdown


def _auc(value: float) -> str:
    return f"{value:.3f}"


def _signed(value: float) -> str:
    return f"{value:+.3f}".replace("-", "−")


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g} %"


def _fraction_phrase(fraction: float, train_patients: int) -> str:
    patients = f" ({train_patients} patients)" if train_patients else ""
    return f"at {_percent(fraction)} of the training patients{patients}"


def _groups(points: Sequence[CurvePoint]) -> list[tuple[str, str]]:
    keys = {(p.task, p.sampling) for p in points}
    return sorted(keys, key=lambda k: (k[0], rank_in(SAMPLING_ORDER, k[1])))


def low_data_tables(points: Sequence[CurvePoint], differences: Sequence[CurveDifference]) -> list[Table]:
    """Per task and sampling: the AUC of every strategy per fraction, then the paired differences."""
    tables = []
    for task, sampling in _groups(points):
        mine = [p for p in points if (p.task, p.sampling) == (task, sampling)]
        models = list(dict.fromkeys(p.model for p in mine))
        fractions = sorted({p.train_fraction for p in mine})
        level = f"{mine[0].confidence_level * 100:g}%"
        header = ["Train fraction", "Train patients"] + [
            f"{model_label(m)} AUC [{level} CI] (seed sd)" for m in models
        ]
        rows = []
        for fraction in fractions:
            at = {p.model: p for p in mine if p.train_fraction == fraction}
            patients = max((p.n_train_patients for p in at.values()), default=0)
            cells = [f"{fraction:g}", str(patients) if patients else "–"]
            for model in models:
                p = at.get(model)
                cells.append(
                    "–"
                    if p is None
                    else f"{_auc(p.roc_auc)} [{_auc(p.low)}, {_auc(p.high)}]"
                    + (f" ({p.seed_sd:.3f})" if p.n_seeds > 1 else "")
                )
            rows.append(tuple(cells))
        title = f"Low-data study, task: {task} ({sampling_label(sampling)})"
        tables.append(Table(title, tuple(header), tuple(rows)))
        diffs = [d for d in differences if (d.task, d.sampling) == (task, sampling)]
        pairs = list(dict.fromkeys((d.model_a, d.model_b) for d in diffs))
        if not pairs:
            continue
        header = ["Train fraction"]
        for a, b in pairs:
            header += [f"{model_label(a)} − {model_label(b)} [{level} CI]", "p"]
        rows = []
        for fraction in fractions:
            cells = [f"{fraction:g}"]
            for pair in pairs:
                d = next(
                    (d for d in diffs if (d.model_a, d.model_b) == pair and d.train_fraction == fraction),
                    None,
                )
                cells += (
                    ["–", "–"]
                    if d is None
                    else [
                        f"{_signed(d.delta)} [{_signed(d.low)}, {_signed(d.high)}]",
                        format_p_value(d.p_value),
                    ]
                )
            rows.append(tuple(cells))
        tables.append(
            Table(
                f"Paired differences, task: {task} ({sampling_label(sampling)})", tuple(header), tuple(rows)
            )
        )
    return tables


def low_data_findings(
    points: Sequence[CurvePoint], differences: Sequence[CurveDifference], *, alpha: float = 0.05
) -> list[str]:
    """Sentences stating what the study shows, one paragraph per task, sampling and pair of strategies."""
    paragraphs = []
    for task, sampling in _groups(points):
        mine = [p for p in points if (p.task, p.sampling) == (task, sampling)]
        largest = max(p.train_fraction for p in mine)
        top = [p for p in mine if p.train_fraction == largest]
        widths = ", ".join(f"{model_label(p.model)} ±{p.half_width:.3f}" for p in top)
        first = mine[0]
        paragraphs.append(
            f"Task {task} ({sampling_label(sampling)}), {first.n_patients} test patients ({first.n_test} "
            f"samples), {first.n_seeds} seed(s) per strategy. Interval half-widths at the largest "
            f"fraction ({largest:g}): {widths}."
        )
        patients = {p.train_fraction: p.n_train_patients for p in mine}
        diffs = [d for d in differences if (d.task, d.sampling) == (task, sampling)]
        for pair in dict.fromkeys((d.model_a, d.model_b) for d in diffs):
            rows = sorted(
                (d for d in diffs if (d.model_a, d.model_b) == pair), key=lambda d: d.train_fraction
            )
            a, b = model_label(pair[0]), model_label(pair[1])
            level = f"{rows[0].confidence_level * 100:g} %"
            stated = "; ".join(
                f"{_fraction_phrase(d.train_fraction, patients.get(d.train_fraction, 0))} "
                f"{_signed(d.delta)} ({level} CI {_signed(d.low)} to {_signed(d.high)}, "
                f"p = {format_p_value(d.p_value)})"
                for d in rows
            )
            higher = [d for d in rows if d.delta > 0]
            significant = [d for d in rows if d.p_value < alpha]
            if not significant:
                verdict = (
                    f"{a} scored higher than {b} at {len(higher)} of {len(rows)} fractions, and no "
                    f"difference is significant at the {alpha:g} level."
                )
            else:
                where = ", ".join(
                    f"{d.train_fraction:g} ({a if d.delta > 0 else b} higher)" for d in significant
                )
                verdict = (
                    f"{a} scored higher than {b} at {len(higher)} of {len(rows)} fractions; the difference "
                    f"is significant at the {alpha:g} level at fraction(s) {where}, and not at the "
                    f"{len(rows) - len(significant)} other(s)."
                )
            paragraphs.append(f"{a} − {b}: {stated}. {verdict}")
    paragraphs.append(
        "Intervals and p-values come from resampling test patients (paired for differences): they say how "
        "much the result could change with other test patients, for these trained models. The spread "
        "over training seeds is the seed sd beside each AUC, and the p-values are not corrected for the "
        "number of fractions and pairs tested."
    )
    return paragraphs


def low_data_markdown(
    points: Sequence[CurvePoint],
    differences: Sequence[CurveDifference],
    *,
    alpha: float = 0.05,
    figures: Sequence[str] = (),
) -> str:
    """The study as Markdown: tables, then what the data show, then the figures (relative paths)."""
    parts = [
        "Test ROC AUC per strategy and training fraction: the mean over seeds, with a patient-bootstrap "
        "interval of that mean; differences are paired (both strategies scored on the same resampled "
        "patients).",
        "",
    ]
    for table in low_data_tables(points, differences):
        parts += [f"### {table.title}", "", table_to_markdown(table), ""]
    parts += ["### What the data show", ""]
    for paragraph in low_data_findings(points, differences, alpha=alpha):
        parts += [paragraph, ""]
    for figure in figures:
        parts += [f"![Low-data study]({figure})", ""]
    return "\n".join(parts).rstrip() + "\n"
