"""What a run says about its data before it trains, and about its results when it ends.

Before training: each split's size, patients and label counts, and a stop when the validation or test
split is empty (a run that cannot select or test a model is not worth its hours). A test split of fewer
than :data:`MIN_TEST_PATIENTS` patients is allowed with a warning (printed, and recorded in the run's
record for ``mtl-hf compare``'s ``results.md``): its intervals are too unreliable to report.
After training: the test metrics of each task with their intervals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..options import OptionsError

if TYPE_CHECKING:
    from .inputs import TrainingData

MIN_TEST_PATIENTS = 10
"""Fewer test patients than this make the test intervals unreliable: a warning says so."""

SPLIT_NAMES = ("train", "validation", "test")


class EmptySplitError(OptionsError):
    """The validation or test split holds no sample: the run could neither select nor test a model."""


@dataclass
class SplitReport:
    """Sizes, patients and label counts of a run's splits.

    Attributes:
        sizes: Samples per split.
        patients: Distinct patients per split (``None`` where the data do not say).
        label_counts: ``{split: {column: {"counts": {label: n}, ...}}}`` of the task columns, if known.
    """

    sizes: dict[str, int]
    patients: dict[str, int | None] = field(default_factory=dict)
    label_counts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, data: TrainingData) -> SplitReport:
        summary = data.summary or {}
        sizes = {
            "train": len(data.train),  # type: ignore[arg-type]
            "validation": len(data.validation),  # type: ignore[arg-type]
            "test": len(data.test) if data.test is not None else 0,  # type: ignore[arg-type]
        }
        return cls(sizes, dict(summary.get("patients") or {}), dict(summary.get("label_counts") or {}))

    def lines(self) -> list[str]:
        """One line per split: samples, patients and each task column's label counts."""
        out = []
        for split in SPLIT_NAMES:
            patients = self.patients.get(split)
            text = f"{split}: {self.sizes[split]} samples" + (
                f", {patients} patients" if patients is not None else ""
            )
            for column, stats in self.label_counts.get(split, {}).items():
                counts = ", ".join(f"{name} {n}" for name, n in stats["counts"].items())
                text += f"; {column}: {counts}"
            out.append(text)
        return out

    def warnings(self) -> list[str]:
        patients = self.patients.get("test")
        if patients is not None and 0 < patients < MIN_TEST_PATIENTS:
            return [
                f"the test split holds {patients} patients (fewer than {MIN_TEST_PATIENTS}): its confidence "
                "intervals are unreliable"
            ]
        return []

    def check(self) -> None:
        """Stop before training when the validation or test split is empty, with every split's size."""
        empty = [split for split in ("validation", "test") if self.sizes[split] == 0]
        if empty:
            raise EmptySplitError(
                f"the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty, so the run "
                f"could not {'select' if 'validation' in empty else 'test'} a model ({'; '.join(self.lines())}). "
                "Change data.split, or check which files were skipped (data.skip_bad)"
            )


PER_OUTPUT = "_per_label"
"""Suffix of a ``test_metrics.json`` key holding one value per output (label or class)."""


def test_metrics_lines(
    results: Mapping[str, Any], output_names: Mapping[str, Sequence[str]] | None = None
) -> list[str]:
    """A line per task of ``test_metrics.json``: each metric with its interval where it has one; then,
    for a metric given per output (``<metric>_per_label``: per label or class of a classifier), a line
    naming each output (``output_names[task]``, else its index) with its value and interval."""
    out = []
    for task, values in results.items():
        if task.startswith("_") or not isinstance(values, Mapping):
            continue
        if values.get("error"):
            out.append(f"{task}: {values['error']}")
            continue
        shown = [
            f"{k} {_number(v)} {_interval(values, k)}"
            for k, v in values.items()
            if f"{k}_low" in values and f"{k}_high" in values and not isinstance(v, list)
        ]
        n = values.get("n_samples")
        out.append(f"{task} (n={n}): {', '.join(shown) or 'no interval computed'}")
        names = list((output_names or {}).get(task) or [])
        for key, per_output in values.items():
            if key.endswith(PER_OUTPUT) and isinstance(per_output, list):
                labels = names if len(names) == len(per_output) else [str(i) for i in range(len(per_output))]
                entries = [
                    f"{label} {_number(v)}"
                    + (f" {_interval(values, key, i)}" if f"{key}_low" in values else "")
                    for i, (label, v) in enumerate(zip(labels, per_output, strict=True))
                ]
                out.append(f"{task} {key[: -len(PER_OUTPUT)]} per label: {', '.join(entries)}")
    return out


def _interval(values: Mapping[str, Any], key: str, index: int | None = None) -> str:
    low, high = values[f"{key}_low"], values[f"{key}_high"]
    if index is not None:
        low, high = low[index], high[index]
    return f"[{_number(low)}, {_number(high)}]"


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
