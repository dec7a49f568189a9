"""Build typed dataclasses from plain (YAML/JSON) dictionaries, with errors that name the key.

Head options, weighter options and training configs are all dataclasses; users write them as nested
dicts. :func:`from_dict` checks every key and type before anything runs, so ``tasks.cls.poolng`` or
``training.lr: "fast"`` fail at once with the dotted path of the offending key instead of deep inside
a training run.

Supported field types: ``bool``, ``int``, ``float`` (ints accepted), ``str``, ``Literal[...]``,
``X | None``, unions of those, ``list[X]``, ``tuple[X, ...]``, ``dict[str, X]``, ``Any`` and nested
dataclasses. ``bool`` is never accepted where a number is expected, nor a number where a bool is.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from .errors import UsageError

T = TypeVar("T")

_MISSING = object()


class OptionsError(UsageError, ValueError):
    """A configuration value or key is invalid; the message names its dotted path."""


def from_dict(cls: type[T], data: Mapping[str, Any] | None, path: str = "") -> T:
    """Instantiate dataclass ``cls`` from ``data``, validating keys and types recursively.

    Args:
        cls: A dataclass type.
        data: The values; ``None`` means all defaults.
        path: Dotted prefix for error messages (e.g. ``"tasks.tumour"``).

    Raises:
        OptionsError: on an unknown key, a missing required key or a value of the wrong type.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise OptionsError(f"{path or cls.__name__}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        known = ", ".join(sorted(fields)) or "(none)"
        raise OptionsError(
            f"{_join(path, str(unknown[0]))}: unknown key. Valid keys{' for ' + path if path else ''}: {known}"
        )
    values: dict[str, Any] = {}
    for name, field in fields.items():
        key = _join(path, name)
        if name in data:
            values[name] = coerce(hints[name], data[name], key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise OptionsError(f"{key}: required key is missing")
    try:
        return cls(**values)
    except OptionsError:
        raise
    except (TypeError, ValueError) as exc:  # __post_init__ validation of the dataclass itself
        raise OptionsError(f"{path or cls.__name__}: {exc}") from exc


def to_dict(obj: Any) -> Any:
    """Plain (JSON-serialisable) form of a dataclass instance; tuples become lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def coerce(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against type ``tp`` and return it (converted where lossless: int -> float, list -> tuple)."""
    if tp is Any or tp is object:
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise OptionsError(f"{key}: must not be null (expected {_type_name(tp)})")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(arg, value, key)
            except OptionsError as exc:
                errors.append(str(exc))
        raise OptionsError(f"{key}: expected {_type_name(tp)}, got {_describe(value)}")
    if origin is Literal:
        choices = get_args(tp)
        if value in choices and not (
            isinstance(value, bool) and True not in choices and False not in choices
        ):
            return value
        raise OptionsError(f"{key}: must be one of {', '.join(map(repr, choices))}; got {value!r}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)  # type: ignore[arg-type]
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, (list, tuple)):
            raise OptionsError(f"{key}: expected a list, got {_describe(value)}")
        (item,) = get_args(tp) or (Any,)
        return [coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise OptionsError(f"{key}: expected a list, got {_describe(value)}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise OptionsError(f"{key}: expected {len(args)} items, got {len(value)}")
        return tuple(coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=False)))
    if origin in (dict, typing.Dict, Mapping):  # noqa: UP006
        if not isinstance(value, Mapping):
            raise OptionsError(f"{key}: expected a mapping, got {_describe(value)}")
        kt, vt = get_args(tp) or (Any, Any)
        out = {}
        for k, v in value.items():
            if kt is str and not isinstance(k, str):
                raise OptionsError(f"{key}: keys must be strings, got {k!r}")
            out[k] = coerce(vt, v, _join(key, str(k)))
        return out
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise OptionsError(f"{key}: expected true or false, got {_describe(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise OptionsError(f"{key}: expected an integer, got {_describe(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                value = float(value)
            except OverflowError:
                raise OptionsError(f"{key}: {_describe(value)} is too large for a number") from None
            if math.isnan(value):
                raise OptionsError(f"{key}: must be a number, got NaN")
            if math.isinf(value):
                raise OptionsError(f"{key}: must be a finite number, got {value}")
            return value
        raise OptionsError(f"{key}: expected a number, got {_describe(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise OptionsError(f"{key}: expected a string, got {_describe(value)}")
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise OptionsError(f"{key}: expected {tp.__name__}, got {_describe(value)}")
    return value


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _type_name(tp: Any) -> str:
    if get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None))
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(map(repr, get_args(tp)))
    return getattr(tp, "__name__", str(tp))
