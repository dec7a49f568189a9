"""Label statistics: the kind of each target column and its counts per split.

The counts feed ``pos_weight`` of the binary and multi-label heads (``negatives / positives``) and the
data section of a model card. What is counted is the column's data kind's business
(:mod:`mtl_hf.data.kinds`): samples per class, positives per label, values per output (with their mean,
standard deviation and range for continuous targets); samples without a label are counted apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import TargetKind
from .kinds import data_kind, kind_of_feature

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict


def target_kind(feature: Any) -> TargetKind:
    """The data kind of a cached column from its ``datasets`` feature (``ClassLabel`` -> multiclass,
    ``List(ClassLabel)`` -> multilabel, an integer ``Value`` -> binary, a fixed-length ``List`` of float
    ``Value`` -> continuous); ``ValueError`` if it is no target."""
    return kind_of_feature(feature).kind


def target_kinds(features: Mapping[str, Any], columns: Sequence[str] | None = None) -> dict[str, TargetKind]:
    """``{column: kind}`` for ``columns``, or for every column that is a target (see :func:`target_kind`)
    when ``columns`` is ``None``; BraTS bookkeeping columns (``tumour_pixels``, ``slice_index``) are not."""
    if columns is None:
        columns = [
            name
            for name, feature in features.items()
            if name not in NON_TARGET_COLUMNS and _is_target(feature)
        ]
    kinds = {}
    for name in columns:
        if name not in features:
            raise KeyError(f"no column {name!r} in the data set; columns: {', '.join(features)}")
        kinds[name] = target_kind(features[name])
    return kinds


NON_TARGET_COLUMNS = frozenset(
    {"image", "image_shape", "image_dtype", "image_encoding", "image_scale", "image_offset", "image_crc32",
     "mask", "mask_crc32", "tumour_pixels",
     "brain_fraction", "patient_id", "sample_id", "source", "slice_index"}
)  # fmt: skip


def _is_target(feature: Any) -> bool:
    try:
        target_kind(feature)
    except ValueError:
        return False
    return True


def target_label_names(features: Mapping[str, Any], column: str) -> list[str]:
    """Class names (multiclass), label names (multilabel), ``["negative", "positive"]`` (binary) or
    output names (continuous)."""
    feature = features[column]
    return kind_of_feature(feature).names_of(feature)


@dataclass
class LabelCounts:
    """Counts of one target in one split.

    Attributes:
        kind: The column's data kind (``"binary"``, ``"multiclass"``, ``"multilabel"``, ``"continuous"``).
        names: Class names (multiclass), label names (multilabel), ``["negative", "positive"]`` (binary)
            or output names (continuous).
        counts: Samples per class (multiclass), positives per label (multilabel),
            ``[negatives, positives]`` (binary), or values present per output (continuous); over the
            labelled samples.
        total: Samples in the split.
        patients: Distinct patients in the split.
        labelled: Samples with a label for this target (``total`` when none is missing).
        summary: Further statistics of the kind, one value per name (continuous: ``mean``, ``std``,
            ``min``, ``max``).
    """

    kind: str
    names: list[str]
    counts: list[int]
    total: int
    patients: int
    labelled: int | None = None
    summary: dict[str, list[float]] = field(default_factory=dict)

    def pos_weight(self) -> float | list[float] | None:
        """``negatives / positives`` over the labelled samples (binary: a float; multilabel: one per
        label) for BCE's ``pos_weight``; ``None`` for the other kinds or when a label has no positive."""
        labelled = self.total if self.labelled is None else self.labelled
        return data_kind(self.kind).pos_weight(self.counts, labelled)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "names": self.names,
            "counts": dict(zip(self.names, self.counts, strict=True)),
            "total": self.total,
            "patients": self.patients,
            "labelled": self.total if self.labelled is None else self.labelled,
        }
        for key, values in self.summary.items():  # NaN (no value) as null: the summary is JSON
            out[key] = {n: v if math.isfinite(v) else None for n, v in zip(self.names, values, strict=True)}
        return out


def label_counts(dataset: Dataset, column: str) -> LabelCounts:
    """:class:`LabelCounts` of ``column`` in one ``datasets.Dataset``."""
    feature = dataset.features[column]
    kind = kind_of_feature(feature)
    names = kind.names_of(feature)
    view = dataset.with_format(None).select_columns([column, "patient_id"])
    values = list(view[column])
    return LabelCounts(
        kind=kind.kind,
        names=names,
        counts=kind.counts(values, names),
        total=len(values),
        patients=len(set(view["patient_id"])),
        labelled=sum(kind.is_labelled(v) for v in values),
        summary=kind.summary(values, names),
    )


def label_statistics(
    datasets: Dataset | DatasetDict, columns: Sequence[str] | None = None
) -> dict[str, dict[str, LabelCounts]]:
    """``{split: {target column: LabelCounts}}`` for a ``DatasetDict`` (or ``{"all": ...}`` for one
    ``Dataset``); ``columns`` defaults to every target column."""
    from datasets import Dataset

    splits = {"all": datasets} if isinstance(datasets, Dataset) else dict(datasets)
    out: dict[str, dict[str, LabelCounts]] = {}
    for split, dataset in splits.items():
        names = list(columns) if columns is not None else list(target_kinds(dataset.features))
        out[split] = {c: label_counts(dataset, c) for c in names}
    return out
