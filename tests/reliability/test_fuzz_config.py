"""Fuzz configuration parsing: random nested values, wrong types, unknown keys, huge numbers, bad YAML.

Every run configuration (and its ``data:`` section) built from a hypothesis-generated tree, YAML text
or command-line override must end in a validated config that survives a round trip through
``config.yaml``, or in :class:`~mtl_hf.options.OptionsError` naming what is wrong.
"""

from __future__ import annotations

import ast
import copy
import itertools
import re
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
@budget(SLOW_EXAMPLES, explore=True)
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
@budget(SLOW_EXAMPLES, explore=True)
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


# -- alias bombs and deep nesting in every YAML mtl-hf reads -----------------------------------------------
def alias_bomb(levels: int = 9, width: int = 10) -> str:
    """A flow sequence of anchors, each repeating the previous one ``width`` times: ``width ** levels``
    values once expanded, in a few hundred bytes."""
    names = [f"a{i}" for i in range(levels)]
    parts = [f"&{names[0]} [{', '.join(['x'] * width)}]"]
    parts += [f"&{n} [{', '.join([f'*{p}'] * width)}]" for p, n in itertools.pairwise(names)]
    return "[" + ", ".join(parts) + "]"


BOMB = alias_bomb()
DEEP = "[" * 400 + "]" * 400  # past Python's recursion limit in yaml.safe_load (5,000: HOSTILE_YAML)


def compare_config_text(value: str) -> str:
    return f"output_dir: x\nrun:\n  data:\n    kind: brats\n    extra: {value}\n"


def read_every_way(tmp_path: Path, value: str) -> list[tuple[str, Any]]:
    """Each YAML reader of mtl-hf, fed ``value`` (a YAML flow value) in a file or on the command line."""
    from mtl_hf.experiments.compare import load_compare_config
    from mtl_hf.hub import render_model_card
    from tests.hub.conftest import write_run

    run_file = tmp_path / "run.yaml"
    run_file.write_text(f"output_dir: x\ndata:\n  kind: brats\n  extra: {value}\n")
    good_run = tmp_path / "good.yaml"
    good_run.write_text(yaml.safe_dump(BASE))
    compare_file = tmp_path / "compare.yaml"
    compare_file.write_text(compare_config_text(value))
    compare_base = tmp_path / "compare_base.yaml"
    compare_base.write_text("output_dir: x\nbase: run.yaml\n")
    good_compare = tmp_path / "good_compare.yaml"
    good_compare.write_text("output_dir: x\n")
    run_folder = write_run(tmp_path / "pushed")
    (run_folder / "config.yaml").write_text(f"model:\n  tasks: {value}\n")
    return [
        (str(run_file), lambda: load_config(run_file)),
        ("command line: data.extra", lambda: load_config(good_run, [f"data.extra={value}"])),
        ("command line: data.extra", lambda: load_config(good_run, ["--data.extra", value])),
        (str(compare_file), lambda: load_compare_config(compare_file)),
        (f"{compare_base}: base: {run_file}", lambda: load_compare_config(compare_base)),
        (
            "command line: run.data.extra",
            lambda: load_compare_config(good_compare, [f"run.data.extra={value}"]),
        ),
        (str(run_folder / "config.yaml"), lambda: render_model_card(run_folder)),
    ]


@pytest.mark.parametrize("name", ["alias bomb (10^9 values)", "400 levels of nesting", "recursive alias"])
def test_every_yaml_reader_bounds_size_and_depth_before_expanding(
    tmp_path: Path, name: str, figures: Counter[str]
) -> None:
    import tracemalloc

    value, reason = {
        "alias bomb (10^9 values)": (BOMB, "more than 100000 values once YAML aliases are expanded"),
        "400 levels of nesting": (DEEP, "nested more than 64 levels deep"),
        "recursive alias": ("&r [x, *r]", "the alias \\*r is used inside its own anchor"),
    }[name]
    assert len(BOMB) < 700
    for where, read in read_every_way(tmp_path, value):
        with time_limit(), pytest.raises(OptionsError, match=f"{re.escape(where)}.*{reason}"):
            read()
        figures["hand-written bad inputs refused"] += 1
    # refused while composing, before anything is expanded: a few MiB, not the 10^9 values' worth
    tracemalloc.start()
    try:
        with pytest.raises(OptionsError):
            load_config(tmp_path / "run.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MiB allocated before the refusal"


def test_bounded_yaml_reads_the_same_values_as_yaml_safe_load() -> None:
    from mtl_hf.safe_yaml import load_yaml

    text = "a: &x {b: [1, 2.5, null, true, '3e-4']}\nc: *x\nd: {<<: *x, e: 2020-01-01}\n"
    assert load_yaml(text, "t.yaml") == yaml.safe_load(text)
    wide = "[" + ", ".join(["[1, 2, 3]"] * 500) + "]"  # 2,001 values
    assert load_yaml(wide, "wide.yaml", max_nodes=2001) == yaml.safe_load(wide)
    with pytest.raises(OptionsError, match=r"wide\.yaml \(line 1\): more than 2000 values"):
        load_yaml(wide, "wide.yaml", max_nodes=2000)
    deep = "[" * 10 + "]" * 10
    assert load_yaml(deep, "deep.yaml", max_depth=10) == yaml.safe_load(deep)
    with pytest.raises(OptionsError, match=r"deep\.yaml \(line 1\): nested more than 9 levels deep"):
        load_yaml(deep, "deep.yaml", max_depth=9)
    with pytest.raises(OptionsError, match=r"t\.yaml: not valid YAML"):
        load_yaml("a: [1, 2", "t.yaml")
    with pytest.raises(OptionsError, match=r"not valid YAML"):
        load_yaml("!!python/object/apply:os.system ['true']", "t.yaml")


def test_no_yaml_is_parsed_outside_the_bounded_reader() -> None:
    import mtl_hf

    root = Path(mtl_hf.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "safe_yaml.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "yaml"
                and node.attr not in ("safe_dump", "dump", "YAMLError")
            ):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}: yaml.{node.attr}")
    assert offenders == []
