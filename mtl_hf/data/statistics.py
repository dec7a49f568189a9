"""Label statistics: the kind of each target column and its class counts per split.

The counts feed ``pos_weight`` of the binary and multi-label heads (``negatives / positives``) and the
data section of a model card.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .config import TargetKind

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict


def target_kind(feature: Any) -> TargetKind:
    """``ClassLabel`` -> multiclass, ``List(ClassLabel)`` -> multilabel, an integer ``Value`` -> binary."""
    from datasets import ClassLabel, List, Value
    from datasets import Sequence as HFSequence

    if isinstance(feature, ClassLabel):
        return "multiclass"
    if isinstance(feature, (List, HFSequence)) and isinstance(feature.feature, ClassLabel):
        return "multilabel"
    if isinstance(feature, Value) and (feature.dtype.startswith("int") or feature.dtype == "bool"):
        return "binary"
    raise ValueError(f"not a target column: feature {feature!r}")


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
    """Class names (multiclass), label names (multilabel) or ``["negative", "positive"]`` (binary)."""
    feature = features[column]
    kind = target_kind(feature)
    if kind == "multiclass":
        return list(feature.names)
    if kind == "multilabel":
        return list(feature.feature.names)
    return ["negative", "positive"]


@dataclass
class LabelCounts:
    """Counts of one target in one split.

    Attributes:
        kind: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        names: Class names (multiclass), label names (multilabel) or ``["negative", "positive"]``.
        counts: Samples per class (multiclass), positives per label (multilabel), or
            ``[negatives, positives]`` (binary).
        total: Samples in the split.
        patients: Distinct patients in the split.
    """

    kind: str
    names: list[str]
    counts: list[int]
    total: int
    patients: int

    def pos_weight(self) -> float | list[float] | None:
        """``negatives / positives`` (binary: a float; multilabel: one per label) for BCE's ``pos_weight``;
        ``None`` for multiclass or when a label has no positive."""
        if self.kind == "binary":
            neg, pos = self.counts
            return neg / pos if pos else None
        if self.kind == "multilabel":
            if any(c == 0 for c in self.counts):
                return None
            return [(self.total - c) / c for c in self.counts]
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "names": self.names,
            "counts": dict(zip(self.names, self.counts, strict=True)),
            "total": self.total,
            "patients": self.patients,
        }


def label_counts(dataset: Dataset, column: str) -> LabelCounts:
    """:class:`LabelCounts` of ``column`` in one ``datasets.Dataset``."""
    features = dataset.features
    kind = target_kind(features[column])
    names = target_label_names(features, column)
    view = dataset.with_format(None).select_columns([column, "patient_id"])
    values = list(view[column])
    counter: Counter[int] = Counter()
    if kind == "multilabel":
        for labels in values:
            counter.update(set(labels))
    else:
        counter.update(int(v) for v in values)
    return LabelCounts(
        kind=kind,
        names=names,
        counts=[counter.get(i, 0) for i in range(len(names))],
        total=len(values),
        patients=len(set(view["patient_id"])),
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
