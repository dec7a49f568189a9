"""The data kinds of targets and their registry: binary, multi-class, multi-label and continuous.

Each kind is a :class:`~mtl_hf.data.targets.TargetEncoder` subclass; :data:`DATA_KINDS` maps the name
a data config writes (``targets.<name>.kind``) to it, and :func:`kind_of_feature` finds the kind of a
cached column from its ``datasets`` feature. The collator, label statistics, patient splits and
undersampling ask the kind, so a new kind is one class here.

=============  ======================================  ==============================================
kind           stored column (``datasets`` feature)    in a batch (missing label)
=============  ======================================  ==============================================
binary         ``Value("int64")`` 0/1 (-1)             float32 ``(B,)`` 0/1 (NaN)
multiclass     ``ClassLabel(names)`` (-1)              int64 ``(B,)`` class index (``IGNORE_INDEX``)
multilabel     ``List(ClassLabel(names))``: indices    float32 ``(B, L)`` multi-hot (a row of NaN)
               of the labels present (``None``)
continuous     ``List(Value("float32"), length=K)``    float32 ``(B, K)`` (NaN where a value is missing)
               (NaN where a value is missing)
=============  ======================================  ==============================================
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..missing_labels import IGNORE_INDEX
from .errors import DataError
from .targets import (
    MISSING_CLASS,
    TargetEncoder,
    class_name,
    is_missing,
    parse_flag,
    sorted_classes,
    split_names,
)

if TYPE_CHECKING:
    from .config import TargetConfig

NAN = float("nan")


class ClassIndexTarget(TargetEncoder):
    """Base of the kinds stored as one class index per sample (binary 0/1, multiclass): -1 (what a
    ``ClassLabel`` keeps for an empty cell) is a missing label; counts are per class index."""

    @classmethod
    def is_labelled(cls, value: Any) -> bool:
        return value is not None and int(value) >= 0

    @classmethod
    def counts(cls, values: Sequence[Any], names: Sequence[str]) -> list[int]:
        counter = Counter(int(v) for v in values if cls.is_labelled(v))
        return [counter.get(i, 0) for i in range(len(names))]


class BinaryTarget(ClassIndexTarget):
    """One column of 0/1 (or true/false, yes/no); or one class column with ``positive`` or ``negative``
    naming classes; or several 0/1 columns, positive when any is 1. Stratum of a patient: ``"1"`` when
    any of its samples is positive (a BraTS patient with a tumour)."""

    kind = "binary"
    batch_layout = "float32 (B,) of 0/1; NaN where a sample has no label"

    @classmethod
    def check_config(cls, config: TargetConfig) -> None:
        if config.positive is not None and config.negative is not None:
            raise ValueError("give either positive or negative classes, not both")

    def label_names(self) -> list[str]:
        return ["negative", "positive"]

    def feature(self) -> Any:
        from datasets import Value

        return Value("int64")

    def missing(self) -> int:
        return MISSING_CLASS

    def encode_values(self, values: list[Any], where: str) -> int:
        cfg = self.config
        if cfg.positive is not None or cfg.negative is not None:
            name = class_name(values[0])
            self._check_declared(name, where)
            if cfg.positive is not None:
                return int(name in cfg.positive)
            return int(name not in (cfg.negative or []))
        flags = [parse_flag(v, where, c) for v, c in zip(values, self.columns, strict=True)]
        return int(any(flags))

    @classmethod
    def matches(cls, feature: Any) -> bool:
        from datasets import Value

        return isinstance(feature, Value) and (feature.dtype.startswith("int") or feature.dtype == "bool")

    @classmethod
    def names_of(cls, feature: Any) -> list[str]:
        return ["negative", "positive"]

    @classmethod
    def collate(cls, values: Sequence[Any], size: int | None) -> torch.Tensor:
        return torch.tensor([float(v) if cls.is_labelled(v) else NAN for v in values], dtype=torch.float32)

    @classmethod
    def pos_weight(cls, counts: Sequence[int], labelled: int) -> float | None:
        neg, pos = counts
        return neg / pos if pos else None

    @classmethod
    def stratum(cls, values: Sequence[Any]) -> str:
        return str(int(any(int(v) for v in values)))

    @classmethod
    def class_key(cls, value: Any) -> int | None:
        return int(value) if cls.is_labelled(value) else None


class MulticlassTarget(ClassIndexTarget):
    """One class column; ``classes`` declares the set and its order (default: the sorted values found).
    Stratum of a patient: its most frequent class (ties: the smallest index)."""

    kind = "multiclass"
    batch_layout = "int64 (B,) class indices; IGNORE_INDEX (-100) where a sample has no label"

    @classmethod
    def check_config(cls, config: TargetConfig) -> None:
        super().check_config(config)
        if len(config.columns) > 1:
            raise ValueError(f"a multiclass target reads one column, got {config.columns}")

    def adopt_classes(self, names: Sequence[str]) -> None:
        if self.classes is None:
            self.classes = list(names)

    def fit(self, rows: Iterable[Mapping[str, Any]]) -> None:
        if self.classes is None:
            (column,) = self.columns
            self.classes = sorted_classes(
                class_name(r[column]) for r in rows if column in r and not is_missing(r[column])
            )

    def label_names(self) -> list[str]:
        return list(self.classes or [])

    def feature(self) -> Any:
        from datasets import ClassLabel

        return ClassLabel(names=self.label_names())

    def missing(self) -> int:
        return MISSING_CLASS

    def encode_values(self, values: list[Any], where: str) -> int:
        name = class_name(values[0])
        self._check_declared(name, where)
        assert self.classes is not None
        return self.classes.index(name)

    @classmethod
    def matches(cls, feature: Any) -> bool:
        from datasets import ClassLabel

        return isinstance(feature, ClassLabel)

    @classmethod
    def names_of(cls, feature: Any) -> list[str]:
        return list(feature.names)

    @classmethod
    def collate(cls, values: Sequence[Any], size: int | None) -> torch.Tensor:
        return torch.tensor(
            [int(v) if cls.is_labelled(v) else IGNORE_INDEX for v in values], dtype=torch.long
        )

    @classmethod
    def stratum(cls, values: Sequence[Any]) -> str:
        counts = Counter(int(v) for v in values)
        top = max(counts.values())
        return str(min(c for c, n in counts.items() if n == top))

    @classmethod
    def class_key(cls, value: Any) -> int | None:
        return int(value) if cls.is_labelled(value) else None


class MultilabelTarget(TargetEncoder):
    """Several 0/1 columns (one per label, named by the columns), a sample without a label when any of
    them is empty; or one column of names joined by ``;`` (or a JSON list) with ``classes`` declaring
    them, where an empty cell lists no label (healthy) and only NaN / JSON ``null`` is missing. Stored
    as the indices of the labels present (the Hub's multi-label convention). Stratum of a patient:
    ``"1"`` when any label of any sample is positive (pathology vs healthy)."""

    kind = "multilabel"
    batch_layout = "float32 (B, L) multi-hot; a row of NaN where a sample has no label"
    has_width = True

    @classmethod
    def check_config(cls, config: TargetConfig) -> None:
        super().check_config(config)
        if len(config.columns) <= 1 and not config.classes:
            raise ValueError("a multilabel target needs several 0/1 columns, or one column and its classes")

    @property
    def _names_cell(self) -> bool:
        return len(self.config.columns) <= 1

    def label_names(self) -> list[str]:
        return list(self.classes) if self._names_cell and self.classes else list(self.columns)

    def feature(self) -> Any:
        from datasets import ClassLabel, List

        return List(ClassLabel(names=self.label_names()))

    def cell_missing(self, value: Any) -> bool:
        if self._names_cell:
            return value is None or (isinstance(value, float) and math.isnan(value))
        return is_missing(value)

    def missing(self) -> None:
        return None

    def encode_values(self, values: list[Any], where: str) -> list[int]:
        if not self._names_cell:
            flags = [parse_flag(v, where, c) for v, c in zip(values, self.columns, strict=True)]
            return [i for i, flag in enumerate(flags) if flag]
        names = split_names(values[0], where)
        for name in names:
            self._check_declared(name, where)
        return [i for i, c in enumerate(self.label_names()) if c in names]

    @classmethod
    def matches(cls, feature: Any) -> bool:
        from datasets import ClassLabel, List
        from datasets import Sequence as HFSequence

        return isinstance(feature, (List, HFSequence)) and isinstance(feature.feature, ClassLabel)

    @classmethod
    def names_of(cls, feature: Any) -> list[str]:
        return list(feature.feature.names)

    @classmethod
    def size_of(cls, feature: Any) -> int:
        return len(feature.feature.names)

    @classmethod
    def collate(cls, values: Sequence[Any], size: int | None) -> torch.Tensor:
        assert size is not None
        out = torch.zeros(len(values), size, dtype=torch.float32)
        for i, present in enumerate(values):
            if present is None:
                out[i] = NAN
            elif len(present):
                out[i, torch.as_tensor(list(present), dtype=torch.long)] = 1.0
        return out

    @classmethod
    def is_labelled(cls, value: Any) -> bool:
        return value is not None

    @classmethod
    def counts(cls, values: Sequence[Any], names: Sequence[str]) -> list[int]:
        counter: Counter[int] = Counter()
        for labels in values:
            if labels is not None:
                counter.update(set(labels))
        return [counter.get(i, 0) for i in range(len(names))]

    @classmethod
    def pos_weight(cls, counts: Sequence[int], labelled: int) -> list[float] | None:
        if any(c == 0 for c in counts):
            return None
        return [(labelled - c) / c for c in counts]

    @classmethod
    def stratum(cls, values: Sequence[Any]) -> str:
        return str(int(any(len(v) > 0 for v in values)))

    @classmethod
    def class_key(cls, value: Any) -> int | None:
        return int(len(value) > 0) if value is not None else None


class ContinuousTarget(TargetEncoder):
    """One or several numeric columns (``columns``: one output each), stored as float32; an empty cell
    or NaN is a missing value of that output (the sample counts as labelled for the task only when all
    its outputs are). A cell that is not a number is bad input.

    Patient strata: the quartile (over the patients with a value) of each patient's mean first output,
    ``"q0"`` to ``"q3"`` (fewer bins with fewer than 8 such patients), ``"none"`` without a value; so a
    split stratified on a continuous target spreads its range over the splits. Not usable for
    undersampling (no classes).
    """

    kind = "continuous"
    batch_layout = "float32 (B, K), one column per output; NaN where a value is missing"
    has_width = True

    @classmethod
    def check_config(cls, config: TargetConfig) -> None:
        super().check_config(config)
        if not config.columns:
            raise ValueError("a continuous target reads numeric manifest columns: give columns")
        if config.classes is not None:
            raise ValueError("classes: a continuous target has none")

    def label_names(self) -> list[str]:
        return list(self.columns)

    def feature(self) -> Any:
        from datasets import List, Value

        return List(Value("float32"), length=len(self.columns))

    def encode(self, row: Mapping[str, Any], where: str) -> list[float]:
        # Each output on its own: an empty cell is that value missing, not the whole target.
        for column in self.columns:
            if column not in row:
                raise DataError(where, f"target {self.name!r}: no column {column!r}")
        return [NAN if is_missing(row[c]) else self._number(row[c], where, c) for c in self.columns]

    def missing(self) -> list[float]:
        return [NAN] * len(self.columns)

    def encode_values(self, values: list[Any], where: str) -> list[float]:
        return [self._number(v, where, c) for v, c in zip(values, self.columns, strict=True)]

    def _number(self, value: Any, where: str, column: str) -> float:
        if isinstance(value, bool):
            raise DataError(
                where, f"target {self.name!r}: column {column!r}: expected a number, got {value!r}"
            )
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise DataError(
                where, f"target {self.name!r}: column {column!r}: expected a number, got {value!r}"
            ) from None
        if math.isinf(number):
            raise DataError(where, f"target {self.name!r}: column {column!r}: {value!r} is not finite")
        return number

    @classmethod
    def matches(cls, feature: Any) -> bool:
        from datasets import List, Value
        from datasets import Sequence as HFSequence

        return (
            isinstance(feature, (List, HFSequence))
            and isinstance(feature.feature, Value)
            and feature.feature.dtype.startswith("float")
        )

    @classmethod
    def names_of(cls, feature: Any) -> list[str]:
        return [f"output_{k}" for k in range(cls.size_of(feature))]

    @classmethod
    def size_of(cls, feature: Any) -> int:
        length = getattr(feature, "length", -1)
        if length is None or length < 1:
            raise ValueError(f"a continuous column needs a fixed length, got feature {feature!r}")
        return int(length)

    @classmethod
    def collate(cls, values: Sequence[Any], size: int | None) -> torch.Tensor:
        rows = [
            [NAN] * (size or 1) if v is None else [NAN if x is None else float(x) for x in v] for v in values
        ]
        return torch.tensor(rows, dtype=torch.float32)

    @classmethod
    def is_labelled(cls, value: Any) -> bool:
        return value is not None and all(x is not None and math.isfinite(x) for x in value)

    @classmethod
    def _matrix(cls, values: Sequence[Any], k: int) -> np.ndarray:
        return np.array(
            [[NAN] * k if v is None else [NAN if x is None else float(x) for x in v] for v in values],
            dtype=np.float64,
        ).reshape(len(values), k)

    @classmethod
    def counts(cls, values: Sequence[Any], names: Sequence[str]) -> list[int]:
        return [int(n) for n in np.isfinite(cls._matrix(values, len(names))).sum(axis=0)]

    @classmethod
    def summary(cls, values: Sequence[Any], names: Sequence[str]) -> dict[str, list[float]]:
        matrix = cls._matrix(values, len(names))
        present = np.isfinite(matrix).any(axis=0)
        stats: dict[str, list[float]] = {}
        for key, fn in (("mean", np.nanmean), ("std", np.nanstd), ("min", np.nanmin), ("max", np.nanmax)):
            stats[key] = [float(fn(matrix[:, k])) if present[k] else NAN for k in range(len(names))]
        return stats

    @classmethod
    def patient_strata(cls, per_patient: Mapping[str, Sequence[Any]]) -> dict[str, str]:
        means = {}
        for patient, values in per_patient.items():
            firsts = [v[0] for v in values if v is not None and v[0] is not None and math.isfinite(v[0])]
            if firsts:
                means[patient] = float(np.mean(firsts))
        bins = 4 if len(means) >= 8 else max(1, len(means) // 2)
        edges: Any = np.quantile(list(means.values()), np.linspace(0, 1, bins + 1)[1:-1]) if means else []
        return {
            p: f"q{int(np.searchsorted(edges, means[p], side='right'))}" if p in means else "none"
            for p in per_patient
        }


DATA_KINDS: dict[str, type[TargetEncoder]] = {
    kind.kind: kind for kind in (BinaryTarget, MulticlassTarget, MultilabelTarget, ContinuousTarget)
}
"""The data kinds by name (``targets.<name>.kind``)."""


def data_kind(name: str) -> type[TargetEncoder]:
    """The kind called ``name``; ``ValueError`` listing the kinds otherwise."""
    try:
        return DATA_KINDS[name]
    except KeyError:
        raise ValueError(f"kind: {name!r} is not a data kind; kinds are {', '.join(DATA_KINDS)}") from None


def encoder_for(name: str, config: TargetConfig) -> TargetEncoder:
    """The encoder of target ``name`` (its kind's class)."""
    return data_kind(config.kind)(name, config)


def kind_of_feature(feature: Any) -> type[TargetEncoder]:
    """The kind of a cached column from its ``datasets`` feature; ``ValueError`` if it is no target."""
    for kind in DATA_KINDS.values():
        if kind.matches(feature):
            return kind
    raise ValueError(f"not a target column: feature {feature!r}")
