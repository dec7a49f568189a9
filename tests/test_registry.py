"""Registries: decorator and entry points merged, lazy, failures reported, errors list what exists."""

from __future__ import annotations

from importlib import metadata

import pytest

from mtl_hf.heads import HEADS
from mtl_hf.registry import Registry, UnknownNameError
from mtl_hf.weighting import WEIGHTERS


def test_builtins_are_listed_with_their_source() -> None:
    assert {"mim", "binary_classification", "multiclass_classification", "multilabel_classification"} <= set(
        HEADS.names()
    )
    assert HEADS.names("*classification") == [
        "binary_classification",
        "multiclass_classification",
        "multilabel_classification",
    ]
    assert HEADS.source_of("mim").source == "mtl-hf (built in)"
    assert "fixed" in WEIGHTERS.names()


def test_unknown_name_lists_available_and_the_group() -> None:
    with pytest.raises(UnknownNameError) as info:
        HEADS.get("segmentaton")
    message = str(info.value)
    assert "unknown head 'segmentaton'" in message and "binary_classification, " in message
    assert "'mtl_hf.heads' entry-point group" in message


def test_duplicate_registration_is_refused() -> None:
    reg: Registry[type] = Registry("thing", "mtl_hf.test_things")

    @reg.register("a")
    class A:
        pass

    with pytest.raises(ValueError, match="'a' is already registered"):

        @reg.register("a")
        class B:
            pass


def test_entry_points_load_lazily_and_failures_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    good = metadata.EntryPoint("good", "collections:OrderedDict", "mtl_hf.test_group")
    broken = metadata.EntryPoint("broken", "mtl_hf_no_such_module:Head", "mtl_hf.test_group")
    real = metadata.entry_points

    def fake_entry_points(**kwargs):
        if kwargs.get("group") == "mtl_hf.test_group":
            return metadata.EntryPoints([good, broken])
        return real(**kwargs)

    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    reg: Registry[type] = Registry("thing", "mtl_hf.test_group")
    assert reg.names() == ["broken", "good"]  # listed without importing
    import collections

    assert reg.get("good") is collections.OrderedDict
    with pytest.raises(UnknownNameError, match="'broken'.*failed to import: ModuleNotFoundError"):
        reg.get("broken")
    entries = {e.name: e for e in reg.entries()}
    assert entries["broken"].error is not None and entries["good"].error is None


def test_class_problems_name_the_kind_the_abstract_methods_and_the_constructor() -> None:
    from mtl_hf.heads import HeadOutput, TaskHead
    from mtl_hf.weighting import FixedWeights

    class Fine(TaskHead):
        def forward(self, features, labels=None):
            return HeadOutput()

    class NoForward(TaskHead):
        pass

    class KeywordOnly(Fine):
        def __init__(self, task_name, options, backbone, *, depth):
            super().__init__(task_name, options, backbone)

    class LooseOptions(Fine):
        Options = dict  # type: ignore[assignment]

    assert HEADS.class_problems(Fine) == []
    assert HEADS.class_problems(NoForward) == ["NoForward does not implement the abstract method(s) forward"]
    assert HEADS.class_problems(KeywordOnly) == [
        "its constructor KeywordOnly(task_name, options, backbone, *, depth) cannot be called as "
        "KeywordOnly(task_name, options, backbone), as mtl-hf builds every head: missing a required "
        "argument: 'depth'"
    ]
    assert HEADS.class_problems(LooseOptions) == [
        "LooseOptions.Options must be a dataclass deriving from HeadOptions, got <class 'dict'>"
    ]
    assert HEADS.class_problems(FixedWeights) == [
        "FixedWeights is not a TaskHead subclass (its bases: SeparableWeighter, LossWeighter, Module, ABC); "
        "the 'mtl_hf.heads' group holds TaskHead subclasses"
    ]
    assert WEIGHTERS.class_problems(len) == [
        "is not a class but builtin_function_or_method <built-in function len>"
    ]
    assert all(not HEADS.class_problems(HEADS.get(name)) for name in HEADS.names())  # every built-in is fine
    assert all(not WEIGHTERS.class_problems(WEIGHTERS.get(name)) for name in WEIGHTERS.names())


def test_qualified_names_pick_a_built_in_and_bad_preferences_are_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mtl_hf.registry import preferences

    assert HEADS.get("mtl-hf:mim") is HEADS.get("mim")
    assert "MTL_HF:mim" in HEADS and "mtl-hf:nothing" not in HEADS and "elsewhere:mim" not in HEADS
    with pytest.raises(
        UnknownNameError,
        match="'elsewhere:mim' asks for 'elsewhere', but head 'mim' is provided by 'mtl-hf' only",
    ):
        HEADS.get("elsewhere:mim")
    monkeypatch.setenv("MTL_HF_PREFER", "mim=mtl-hf, fixed")
    with pytest.raises(
        UnknownNameError, match="MTL_HF_PREFER: expected 'name=distribution' items .* got 'fixed'"
    ):
        preferences()
    monkeypatch.setenv("MTL_HF_PREFER", " mim = mtl-hf ,fixed=mtl-hf,")
    assert preferences() == {"mim": "mtl-hf", "fixed": "mtl-hf"}
