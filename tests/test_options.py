"""Typed options from dicts: every wrong key or type is named by its dotted path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from mtl_hf.options import OptionsError, from_dict, to_dict


@dataclass
class Inner:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Outer:
    name: str
    mode: Literal["a", "b"] = "a"
    steps: int = 10
    inner: Inner = field(default_factory=Inner)
    tags: list[str] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)
    maybe: int | None = None


def test_round_trip_and_conversions() -> None:
    obj = from_dict(Outer, {"name": "x", "inner": {"lr": 1, "betas": [0.8, 0.9]}, "extra": {"k": 2}})
    assert obj.inner.lr == 1.0 and isinstance(obj.inner.lr, float)
    assert obj.inner.betas == (0.8, 0.9)
    assert to_dict(obj)["inner"] == {"lr": 1.0, "betas": [0.8, 0.9]}
    assert from_dict(Outer, to_dict(obj)) == obj


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "name: required key is missing"),
        (
            {"name": "x", "nmae": 1},
            "nmae: unknown key. Valid keys: extra, inner, maybe, mode, name, steps, tags",
        ),
        ({"name": "x", "inner": {"lr": "fast"}}, "inner.lr: expected a number, got str 'fast'"),
        ({"name": "x", "inner": {"betas": [0.9]}}, "inner.betas: expected 2 items"),
        ({"name": "x", "steps": True}, "steps: expected an integer, got bool"),
        ({"name": "x", "steps": 1.5}, "steps: expected an integer"),
        ({"name": "x", "mode": "c"}, "mode: must be one of 'a', 'b'; got 'c'"),
        ({"name": "x", "tags": "abc"}, "tags: expected a list"),
        ({"name": "x", "tags": [1]}, r"tags\[0\]: expected a string"),
        ({"name": "x", "extra": {"k": "v"}}, "extra.k: expected a number"),
        ({"name": "x", "inner": 3}, "inner: expected a mapping"),
        ({"name": "x", "maybe": "1"}, "maybe: expected int"),
        ({"name": "x", "inner": {"lr": float("nan")}}, "inner.lr: must be a number, got NaN"),
    ],
)
def test_errors_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        from_dict(Outer, data)
