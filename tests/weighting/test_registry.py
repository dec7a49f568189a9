"""Every built-in weighter is registered, configurable through MTLConfig, and validates its options."""

from __future__ import annotations

import pytest

from mtl_hf import MTLConfig
from mtl_hf.weighting import WEIGHTERS, GradientWeighter, LossWeighter
from tests.weighting.helpers import TASKS, TINY_BACKBONE

BUILT_IN = ["cagrad", "dwa", "famo", "fixed", "gradnorm", "mgda", "nash_mtl", "pcgrad", "rlw", "uncertainty"]


def test_built_in_weighters_are_registered_with_documented_options() -> None:
    assert set(BUILT_IN) <= set(WEIGHTERS.names())
    for name in BUILT_IN:
        cls = WEIGHTERS.get(name)
        assert issubclass(cls, LossWeighter)
        assert WEIGHTERS.source_of(name).source == "mtl-hf (built in)"
        doc = (
            (cls.__doc__ or "")
            + (cls.Options.__doc__ or "")
            + (__import__(cls.__module__, fromlist=["x"]).__doc__ or "")
        )
        assert name == "fixed" or "20" in doc, f"{name}: its paper (year) is cited"
        for field in cls.Options.__dataclass_fields__:
            assert f"{field}:" in (cls.Options.__doc__ or ""), f"{name}.{field} is documented"


def test_gradient_based_weighters_share_the_gradient_option() -> None:
    for name in ["cagrad", "gradnorm", "mgda", "nash_mtl", "pcgrad"]:
        assert issubclass(WEIGHTERS.get(name), GradientWeighter)


@pytest.mark.parametrize(
    ("weighting", "message"),
    [
        ({"type": "mgda", "gradients": "layers"}, "weighting.gradients: must be one of"),
        ({"type": "mgda", "normalization": "max"}, "weighting.normalization"),
        ({"type": "cagrad", "c": -1.0}, "weighting.c: must be a finite number >= 0"),
        ({"type": "famo", "lr": 0.0}, "weighting.lr: must be a positive number"),
        ({"type": "famo", "min_losses": {"nope": 0.1}}, "weighting.min_losses.nope: no task named 'nope'"),
        ({"type": "uncertainty", "forms": {"tumour": "ordinal"}}, "weighting.forms.tumour: must be one of"),
        ({"type": "uncertainty", "forms": {"nope": "regression"}}, "weighting.forms.nope: no task named"),
        ({"type": "dwa", "temperature": 0}, "weighting.temperature: must be a positive number"),
        ({"type": "rlw", "distribution": "cauchy"}, "weighting.distribution: must be one of"),
        ({"type": "gradnorm", "alpha": -0.5}, "weighting.alpha"),
        ({"type": "pcgrad", "reduction": "max"}, "weighting.reduction"),
        ({"type": "nash_mtl", "ridge": 2.0}, "weighting.ridge"),
        ({"type": "pcgrad", "gradient": "features"}, "weighting.gradient: unknown key"),
    ],
)
def test_bad_options_name_the_key(weighting: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MTLConfig(backbone_config=dict(TINY_BACKBONE), tasks=dict(TASKS), weighting=weighting)


def test_config_stores_every_option_with_its_default() -> None:
    config = MTLConfig(backbone_config=dict(TINY_BACKBONE), tasks=dict(TASKS), weighting={"type": "cagrad"})
    assert config.weighting == {"type": "cagrad"}
    assert config.resolved_weighting == {
        "type": "cagrad",
        "gradients": "parameters",
        "c": 0.5,
        "rescale": "1+c^2",
    }
