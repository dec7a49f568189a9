"""Turn manifest cells or class folders into the values a task head trains on (see :class:`TargetConfig`).

:class:`TargetEncoder` is what every data kind shares: reading a target's columns from a row, telling a
missing cell (no label for this task) from a value, and naming the file and row in errors. Each kind
(:mod:`mtl_hf.data.kinds`: binary, multi-class, multi-label, continuous) is a subclass that says how
its values are parsed and stored, batched, counted and stratified; the rest of the data layer goes
through that interface and never branches on a kind's name.

Values are checked, never guessed: a cell that is not 0/1 where a flag is expected, a class outside
the declared set, or a non-number where a number is expected raises :class:`~mtl_hf.data.DataError`
naming the file, row and column. An empty cell (or NaN, or JSON ``null``) is a missing label.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import DataError

if TYPE_CHECKING:
    import torch

    from .config import TargetConfig

CLASS_FOLDER = "__class_folder__"
"""Key under which an imagefolder item carries its class (the target's column when ``columns`` is empty)."""

MISSING_CLASS = -1
"""What a class-valued column (binary, multi-class) stores for a sample without a label: the ``datasets``
convention for ``ClassLabel`` columns, which accept no other negative value. Batches carry NaN
(binary) or :data:`~mtl_hf.missing_labels.IGNORE_INDEX` (multi-class) instead."""

_TRUE = {"1", "1.0", "true", "yes", "y", "t"}
_FALSE = {"0", "0.0", "false", "no", "n", "f"}


def is_missing(value: Any) -> bool:
    """Whether a cell holds no value: ``None``, an empty or blank string, NaN (a float or the text)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, str):
        return value.strip().lower() in ("", "nan")
    return False


def parse_flag(value: Any, where: str, column: str) -> int:
    """0/1 from ``0``, ``1``, booleans or the strings true/false/yes/no (any case)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    raise DataError(where, f"column {column!r}: expected 0/1 (or true/false), got {value!r}")


def class_name(value: Any) -> str:
    """A class cell as text (``2`` and ``"2"`` are the same class)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def sorted_classes(values: Iterable[str]) -> list[str]:
    """Class names in order: numerically when all are integers, else alphabetically."""
    found = set(values)
    if all(v.lstrip("-").isdigit() for v in found):
        return sorted(found, key=int)
    return sorted(found)


def split_names(value: Any, where: str) -> set[str]:
    """Label names of a multilabel cell: a list, a JSON list, or names joined by ``;`` (empty: none)."""
    if value is None:
        return set()
    if isinstance(value, (list, tuple)):
        items = value
    else:
        text = str(value).strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(where, f"cannot parse label list {text!r}: {exc}") from exc
        else:
            items = text.split(";")
    return {class_name(v) for v in items if class_name(v)}


class TargetEncoder(ABC):
    """One data kind of target: how a target of this kind is read, stored, batched and summarised.

    An instance encodes one target of a manifest (``name`` and its :class:`TargetConfig`): call
    :meth:`fit` on all rows first (a multiclass target without declared ``classes`` collects them),
    then :meth:`encode` per row. The class methods work from a cached column's ``datasets`` feature
    alone, for the steps after the cache (collate, statistics, splits).

    Subclasses set :attr:`kind` and :attr:`batch_layout` and implement the abstract methods; they are
    registered in :data:`mtl_hf.data.kinds.DATA_KINDS`.
    """

    kind: ClassVar[str]
    """The name users write in ``targets.<name>.kind`` and heads declare as ``target_kind``."""
    batch_layout: ClassVar[str]
    """The dtype and shape of this kind's labels in a batch, in words (docs, errors)."""
    has_width: ClassVar[bool] = False
    """Whether a batch of labels is ``(B, width)`` (:meth:`size_of`) rather than ``(B,)``."""

    def __init__(self, name: str, config: TargetConfig) -> None:
        self.name = name
        self.config = config
        self.classes: list[str] | None = list(config.classes) if config.classes is not None else None

    # -- configuration ---------------------------------------------------------------------------------
    @classmethod
    def check_config(cls, config: TargetConfig) -> None:
        """Raise ``ValueError`` for options that do not fit this kind (the config's ``__post_init__``).
        Default: no ``positive`` / ``negative`` classes (a kind that reads them overrides this)."""
        if config.positive is not None or config.negative is not None:
            raise ValueError(f"positive/negative do not apply to {cls.kind} targets")

    @property
    def columns(self) -> list[str]:
        return list(self.config.columns) or [CLASS_FOLDER]

    # -- encoding manifest rows ------------------------------------------------------------------------
    def adopt_classes(self, names: Sequence[str]) -> None:
        """Take the class names (in their order) of a source column that declares them, such as a
        ``ClassLabel`` column of a 🤗 dataset, where the config declares none. Default: a kind whose
        names come from elsewhere ignores them."""
        return None

    def fit(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Learn what :meth:`encode` needs from every row (default: nothing)."""
        return None

    @abstractmethod
    def label_names(self) -> list[str]:
        """The names of the target's classes, labels or outputs."""

    @abstractmethod
    def feature(self) -> Any:
        """The ``datasets`` feature of this target's column."""

    def encode(self, row: Mapping[str, Any], where: str) -> Any:
        """The stored value of this target for ``row``; ``where`` names the file and row in errors.

        A row whose cells of this target are empty gets the kind's missing value (:meth:`missing`).
        """
        for column in self.columns:
            if column not in row:
                raise DataError(where, f"target {self.name!r}: no column {column!r}")
        values = [row[c] for c in self.columns]
        if any(self.cell_missing(v) for v in values):
            if CLASS_FOLDER in self.columns:
                raise DataError(where, f"target {self.name!r}: class folder is empty or missing")
            return self.missing()
        return self.encode_values(values, where)

    def cell_missing(self, value: Any) -> bool:
        """Whether a cell of this target holds no label (default: :func:`is_missing`)."""
        return is_missing(value)

    @abstractmethod
    def missing(self) -> Any:
        """The stored value of a sample without a label."""

    @abstractmethod
    def encode_values(self, values: list[Any], where: str) -> Any:
        """The stored value from the cells of :attr:`columns` (none of them missing)."""

    def _check_declared(self, name: str, where: str) -> None:
        if self.classes is not None and name not in self.classes:
            raise DataError(
                where, f"target {self.name!r}: class {name!r} is not in the declared classes {self.classes}"
            )

    # -- a cached column -----------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def matches(cls, feature: Any) -> bool:
        """Whether a cached column with this ``datasets`` feature holds targets of this kind."""

    @classmethod
    @abstractmethod
    def names_of(cls, feature: Any) -> list[str]:
        """Class names, label names or output names of a column with this feature."""

    @classmethod
    def size_of(cls, feature: Any) -> int | None:
        """The width of one sample's labels in a batch (``L`` or ``K``), ``None`` for ``(B,)`` labels."""
        return None

    @classmethod
    @abstractmethod
    def collate(cls, values: Sequence[Any], size: int | None) -> torch.Tensor:
        """The batch tensor of a column's stored values (see :attr:`batch_layout`)."""

    @classmethod
    @abstractmethod
    def is_labelled(cls, value: Any) -> bool:
        """Whether a stored value is a label (not the missing value)."""

    @classmethod
    @abstractmethod
    def counts(cls, values: Sequence[Any], names: Sequence[str]) -> list[int]:
        """One count per name over the labelled values: samples per class, positives per label, values
        per output."""

    @classmethod
    def summary(cls, values: Sequence[Any], names: Sequence[str]) -> dict[str, list[float]]:
        """Further per-name statistics of the labelled values for the data summary (default: none)."""
        return {}

    @classmethod
    def pos_weight(cls, counts: Sequence[int], labelled: int) -> float | list[float] | None:
        """``negatives / positives`` for a BCE loss's ``pos_weight``, where the kind has one."""
        return None

    @classmethod
    def patient_strata(cls, per_patient: Mapping[str, Sequence[Any]]) -> dict[str, str]:
        """Each patient's stratum from its samples' stored values (labelled or not). Default: the
        stratum of each patient's labelled values (:meth:`stratum`), ``"none"`` without any."""
        strata = {}
        for patient, values in per_patient.items():
            labelled = [v for v in values if cls.is_labelled(v)]
            strata[patient] = cls.stratum(labelled) if labelled else "none"
        return strata

    @classmethod
    def stratum(cls, values: Sequence[Any]) -> str:
        """The stratum of a patient from its labelled values."""
        raise NotImplementedError(f"{cls.kind} targets have no per-patient stratum")

    @classmethod
    def class_key(cls, value: Any) -> int | None:
        """The class a labelled sample counts as when undersampling; ``None``: not balanced."""
        return None
