"""Turn manifest cells or class folders into the values a task head trains on (see :class:`TargetConfig`).

Each target becomes one dataset column whose feature type says how to batch it, so a collate
function can give every head the dtype and shape it expects:

* binary -> ``Value("int64")`` of 0/1 -> float ``(B,)`` in a batch;
* multiclass -> ``ClassLabel(names=classes)`` -> long ``(B,)``;
* multilabel -> ``List(ClassLabel(names=labels))``, the indices of the labels present (as in the
  Hub's multi-label data sets) -> multi-hot float ``(B, L)``.

Values are checked, never guessed: a cell that is not 0/1 where a flag is expected, or a class outside
the declared set, raises :class:`~mtl_hf.data.DataError` naming the file and row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from .config import TargetConfig, TargetKind
from .errors import DataError

CLASS_FOLDER = "__class_folder__"
"""Key under which an imagefolder item carries its class (the target's column when ``columns`` is empty)."""

_TRUE = {"1", "1.0", "true", "yes", "y", "t"}
_FALSE = {"0", "0.0", "false", "no", "n", "f"}


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


def _sorted_classes(values: Iterable[str]) -> list[str]:
    found = set(values)
    if all(v.lstrip("-").isdigit() for v in found):
        return sorted(found, key=int)
    return sorted(found)


class TargetEncoder:
    """Encodes one target of :class:`~mtl_hf.data.ImagesConfig` from rows (dicts of cells).

    Call :meth:`fit` on all rows first when a multiclass target leaves ``classes`` undeclared (the
    classes are then the sorted values found), then :meth:`encode` per row.
    """

    def __init__(self, name: str, config: TargetConfig) -> None:
        self.name = name
        self.config = config
        self.classes: list[str] | None = list(config.classes) if config.classes is not None else None

    @property
    def kind(self) -> TargetKind:
        return self.config.kind

    @property
    def columns(self) -> list[str]:
        return list(self.config.columns) or [CLASS_FOLDER]

    def fit(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Collect the classes of an undeclared multiclass target."""
        if self.kind == "multiclass" and self.classes is None:
            (column,) = self.columns
            self.classes = _sorted_classes(class_name(r[column]) for r in rows if column in r)

    def label_names(self) -> list[str]:
        """Class names (multiclass), label names (multilabel) or ``["negative", "positive"]`` (binary)."""
        if self.kind == "multiclass":
            return list(self.classes or [])
        if self.kind == "multilabel":
            return (
                list(self.classes) if len(self.config.columns) <= 1 and self.classes else list(self.columns)
            )
        return ["negative", "positive"]

    def feature(self) -> Any:
        """The ``datasets`` feature of this target's column."""
        from datasets import ClassLabel, List, Value

        if self.kind == "multiclass":
            return ClassLabel(names=self.label_names())
        if self.kind == "multilabel":
            return List(ClassLabel(names=self.label_names()))
        return Value("int64")

    def encode(self, row: Mapping[str, Any], where: str) -> int | list[int]:
        """The target's value for ``row``; ``where`` names the file and row in errors."""
        names_cell = self.kind == "multilabel" and len(self.config.columns) <= 1
        for column in self.columns:
            if column not in row:
                raise DataError(where, f"target {self.name!r}: no column {column!r}")
            if not names_cell and (row[column] is None or row[column] == ""):
                name = "class folder" if column == CLASS_FOLDER else f"column {column!r}"
                raise DataError(where, f"target {self.name!r}: {name} is empty or missing")
        values = [row[c] for c in self.columns]
        if self.kind == "binary":
            return self._binary(values, where)
        if self.kind == "multiclass":
            return self._class_index(class_name(values[0]), where)
        return self._multilabel(values, where)

    def _check_declared(self, name: str, where: str) -> None:
        if self.classes is not None and name not in self.classes:
            raise DataError(
                where, f"target {self.name!r}: class {name!r} is not in the declared classes {self.classes}"
            )

    def _binary(self, values: list[Any], where: str) -> int:
        cfg = self.config
        if cfg.positive is not None or cfg.negative is not None:
            name = class_name(values[0])
            self._check_declared(name, where)
            if cfg.positive is not None:
                return int(name in cfg.positive)
            return int(name not in (cfg.negative or []))
        flags = [parse_flag(v, where, c) for v, c in zip(values, self.columns, strict=True)]
        return int(any(flags))

    def _class_index(self, name: str, where: str) -> int:
        self._check_declared(name, where)
        assert self.classes is not None
        return self.classes.index(name)

    def _multilabel(self, values: list[Any], where: str) -> list[int]:
        if len(self.config.columns) > 1:
            flags = [parse_flag(v, where, c) for v, c in zip(values, self.columns, strict=True)]
            return [i for i, flag in enumerate(flags) if flag]
        names = _split_names(values[0], where)
        for name in names:
            self._check_declared(name, where)
        return [i for i, c in enumerate(self.label_names()) if c in names]


def _split_names(value: Any, where: str) -> set[str]:
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
