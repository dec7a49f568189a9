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
