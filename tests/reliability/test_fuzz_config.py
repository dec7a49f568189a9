"""Fuzz configuration parsing: random nested values, wrong types, unknown keys, huge numbers, bad YAML.

Every run configuration (and its ``data:`` section) built from a hypothesis-generated tree, YAML text
or command-line override must end in a validated config that survives a round trip through
``config.yaml``, or in :class:`~mtl_hf.options.OptionsError` naming what is wrong.
"""

from __future__ import annotations

import copy
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from mtl_hf.data import DataConfig
from mtl_hf.options import OptionsError, from_dict, to_dict
from mtl_hf.training.config import RunConfig, dump_config, load_config
from tests.training.synthetic import base_config

from .fuzzing import CI_EXAMPLES, SLOW_EXAMPLES, budget, tally, time_limit

BASE: dict[str, Any] = base_config("runs/fuzz")
BASE["data"] = {
    "kind": "brats",
    "root": "data/brats",
    "split": {"train": 0.8, "validation": 0.1, "test": 0.1},
}
BASE["task_columns"] = {"tumour": "tumour"}

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**1100), max_value=2**1100),  # beyond float range
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["stl", "mtl", "pretrain", "cosine", "brats", "images", "1e-3", "true", "~", ""]),
    st.sampled_from([10**400, -(10**400), 2**63, 2**64, float("inf"), float("-inf"), float("nan"), 0, -1]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | SCALARS, inner, max_size=4)
    ),
    max_leaves=12,
)


def paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of a nested dict (leaves and inner nodes)."""
    found = [prefix] if prefix else []
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += paths(value, (*prefix, key))
    return found


@st.composite
def mutated_configs(draw: st.DrawFn) -> Any:
    """The base config with a few keys replaced, added or deleted; sometimes a random tree instead."""
    if draw(st.integers(0, 9)) == 0:
        return draw(VALUES)
    tree = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        target = draw(st.sampled_from(paths(tree)))
        parent = tree
        for key in target[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "add", "delete"]))
        if action == "replace":
            parent[target[-1]] = draw(VALUES)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10) | SCALARS)] = draw(VALUES)
        else:
            parent.pop(target[-1], None)
    return tree


def check_run_config(tree: Any) -> str:
    try:
        with time_limit():
            config = from_dict(RunConfig, tree)
            data = from_dict(DataConfig, config.data, "data") if config.data else None
    except OptionsError as exc:
        assert str(exc)
        return "refused"
    # accepted: what config.yaml holds reads back to the same config
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(dump_config(config))
        assert dump_config(load_config(path)) == dump_config(config)  # text: NaN == NaN there
    if data is not None:
        assert to_dict(from_dict(DataConfig, to_dict(data))) == to_dict(data)
    return "accepted"


def run_config_property(tree: Any) -> None:
    tally("run configs", check_run_config(tree))


@budget(CI_EXAMPLES)
@given(tree=mutated_configs())
def test_random_config_trees_validate_or_are_refused(tree: Any) -> None:
    run_config_property(tree)


@pytest.mark.slow
@budget(SLOW_EXAMPLES)
@given(tree=mutated_configs())
def test_random_config_trees_validate_or_are_refused_long(tree: Any) -> None:
    run_config_property(tree)


# -- YAML text and command-line overrides ------------------------------------------------------------------
KEYS = sorted({".".join(map(str, p)) for p in paths(BASE)} | {"training.epochz", "model", "data.brats.axis"})
OVERRIDE_VALUES = st.one_of(
    st.sampled_from(
        [
            "3",
            "-1",
            "1e400",
            "0x10",
            "nan",
            ".inf",
            "[1, 2",
            "{a: 1}",
            "null",
            "''",
            "*a",
            "!!python/object:os.system x",
            "1" * 400,
        ]
    ),
    st.text(max_size=20),
)


@st.composite
def yaml_and_overrides(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = (
        yaml.safe_dump(draw(mutated_configs()), allow_unicode=True)
        if draw(st.booleans())
        else draw(st.text(max_size=200))
    )
    overrides = []
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(KEYS) | st.text(max_size=10))
        value = draw(OVERRIDE_VALUES)
        overrides += draw(
            st.sampled_from([[f"{key}={value}"], [f"--{key}", value], [f"--{key}={value}"], [value]])
        )
    return text, overrides


def yaml_property(case: tuple[str, list[str]]) -> None:
    text, overrides = case
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(text)
        try:
            with time_limit():
                config = load_config(path, overrides)
        except OptionsError as exc:
            assert str(exc)
            tally("YAML configs and overrides", "refused")
            return
    assert isinstance(config, RunConfig)
    tally("YAML configs and overrides", "accepted")


@budget(CI_EXAMPLES)
@given(case=yaml_and_overrides())
def test_random_yaml_and_overrides_load_or_are_refused(case: tuple[str, list[str]]) -> None:
    yaml_property(case)


@pytest.mark.slow
@budget(SLOW_EXAMPLES)
@given(case=yaml_and_overrides())
def test_random_yaml_and_overrides_load_or_are_refused_long(case: tuple[str, list[str]]) -> None:
    yaml_property(case)


HOSTILE_YAML = {
    "python object tag": "output_dir: !!python/object/apply:os.system ['touch pwned']\n",
    "deep nesting": "output_dir: x\ndata: " + "[" * 5000 + "]" * 5000 + "\n",
    "alias bomb (9^9 values)": (
        "output_dir: x\ndata:\n  kind: brats\n  a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"  {n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
        )
    ),
    "huge integer for a float": "output_dir: x\noptimizer: {lr: " + "9" * 400 + "}\n",
    "infinite learning rate": "output_dir: x\noptimizer: {lr: .inf}\n",
    "top level list": "- output_dir\n- x\n",
    "binary junk": "\x00\x01\x02\xff",
}


@pytest.mark.parametrize("name", list(HOSTILE_YAML))
def test_hostile_yaml_is_refused(tmp_path: Path, name: str, figures: Counter[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(HOSTILE_YAML[name], errors="surrogateescape")
    with time_limit(), pytest.raises(OptionsError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    figures["hand-written bad inputs refused"] += 1
