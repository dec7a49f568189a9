"""Plugins fail early and clearly: real distributions, pip-installed here, that clash with each other and
with a built-in, register a weighter in the heads group, or have constructors mtl-hf cannot call. Each
is refused where it is used and reported by ``mtl-hf plugins``; a clash is settled by a qualified name
(kept in a saved model) or by ``MTL_HF_PREFER``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import install_distribution, run_process, run_python

SHARED_HEAD = '''
import torch
from torch import nn

from mtl_hf.heads import HeadOutput, TaskHead


class SharedHead(TaskHead):
    """A self-supervised toy head; both distributions call theirs ``shared_head``."""

    requires_labels = False

    def __init__(self, task_name, options, backbone):
        super().__init__(task_name, options, backbone)
        self.proj = nn.Linear(backbone.hidden_size, 1)

    def forward(self, features, labels=None):
        out = self.proj(features.cls_token)[:, 0]
        return HeadOutput(loss=out.pow(2).mean(), logits=out)
'''

MISTAKES = '''
from torch import nn

from mtl_hf.heads import HeadOutput, TaskHead
from mtl_hf.weighting import LossWeighter, UncertaintyWeighting


class HalfWeights(LossWeighter):
    """A weighter, declared in the heads group by mistake."""

    def weights(self, losses):
        return {name: loss.new_tensor(0.5) for name, loss in losses.items()}


class NoBackboneHead(TaskHead):
    """A head whose constructor forgets the backbone argument."""

    def __init__(self, task_name, options):
        super().__init__(task_name, options, None)

    def forward(self, features, labels=None):
        return HeadOutput()


class UnfinishedHead(TaskHead):
    """A head without forward."""


class TemperatureWeighter(LossWeighter):
    """A weighter wanting a third, required constructor argument."""

    def __init__(self, task_names, options, temperature):
        super().__init__(task_names, options)

    def weights(self, losses):
        return {name: loss.new_tensor(1.0) for name, loss in losses.items()}


class MyUncertainty(UncertaintyWeighting):
    """Registered under the built-in's name."""
'''

TINY = (
    '{"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,'
    ' "intermediate_size": 64, "image_size": 32, "patch_size": 8}'
)

LOOKUPS = f"""
import contextlib, io, json, os, sys
import mtl_hf
from mtl_hf.plugins_report import main
from mtl_hf import HEADS, WEIGHTERS, MTLConfig, MTLModel
from transformers import AutoModel

TINY = {TINY}

def error(call):
    try:
        call()
    except Exception as exc:
        return f"{{type(exc).__name__}}: {{exc}}"
    return None

report = {{
    "plain": error(lambda: HEADS.get("shared_head")),
    "config": error(lambda: MTLConfig(backbone_config=TINY, tasks={{"t": {{"type": "shared_head"}}}})),
    "builtin": error(lambda: WEIGHTERS.get("uncertainty")),
    "builtin_config": error(lambda: MTLConfig(backbone_config=TINY, weighting={{"type": "uncertainty"}})),
    "qualified_b": HEADS.get("mtl_hf_clash_b:shared_head").__module__,
    "qualified_builtin": WEIGHTERS.get("mtl-hf:uncertainty").__module__,
    "qualified_elsewhere": error(lambda: HEADS.get("mtl-hf-clash-c:shared_head")),
    "wrong_kind": error(lambda: HEADS.get("half_weights")),
    "wrong_signature": error(lambda: MTLConfig(backbone_config=TINY, tasks={{"t": {{"type": "no_backbone"}}}})),
    "abstract": error(lambda: HEADS.get("unfinished")),
    "weighter_signature": error(
        lambda: MTLConfig(backbone_config=TINY, weighting={{"type": "temperature"}})
    ),
}}
model = MTLModel(MTLConfig(backbone_config=TINY, tasks={{"t": {{"type": "mtl-hf-clash-b:shared_head"}}}}))
model.save_pretrained(sys.argv[1])
saved = json.load(open(sys.argv[1] + "/config.json"))
report["saved"] = [saved["tasks"]["t"]["type"], saved["head_sources"]]
report["reloaded"] = type(AutoModel.from_pretrained(sys.argv[1]).head("t")).__module__

# MTL_HF_PREFER is read at each lookup
os.environ["MTL_HF_PREFER"] = "shared_head=mtl_hf_clash_a, uncertainty=mtl-hf"
report["preferred"] = [HEADS.get("shared_head").__module__, WEIGHTERS.get("uncertainty").__module__]
out = io.StringIO()
with contextlib.redirect_stdout(out):
    report["settled_exit"] = main([])
report["settled"] = out.getvalue()
os.environ["MTL_HF_PREFER"] = "shared_head=mtl-hf-clash-c"
report["prefer_elsewhere"] = error(lambda: HEADS.get("shared_head"))
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def clashing_sites(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two distributions providing ``shared_head``; the first also carries the mistakes."""
    root = tmp_path_factory.mktemp("clash")
    site_a = install_distribution(
        root,
        "mtl-hf-clash-a",
        "1.0",
        {
            "mtl_hf.heads": {
                "shared_head": "clash_a:SharedHead",
                "half_weights": "clash_a_mistakes:HalfWeights",
                "no_backbone": "clash_a_mistakes:NoBackboneHead",
                "unfinished": "clash_a_mistakes:UnfinishedHead",
            },
            "mtl_hf.weighters": {
                "temperature": "clash_a_mistakes:TemperatureWeighter",
                "uncertainty": "clash_a_mistakes:MyUncertainty",
            },
        },
        {"clash_a": SHARED_HEAD, "clash_a_mistakes": MISTAKES},
    )
    site_b = install_distribution(
        root,
        "mtl-hf-clash-b",
        "2.0",
        {"mtl_hf.heads": {"shared_head": "clash_b:SharedHead"}},
        {"clash_b": SHARED_HEAD},
    )
    return [site_a, site_b]


def test_clashes_and_unusable_plugins_are_refused_where_used(
    clashing_sites: list[Path], tmp_path: Path
) -> None:
    report = json.loads(run_python(LOOKUPS, str(tmp_path / "model"), sites=clashing_sites))

    # two distributions: an error naming both, with their entry-point values and how to pick
    plain = report["plain"]
    assert plain.startswith("AmbiguousNameError: head 'shared_head' is provided 2 times: by ")
    assert "mtl-hf-clash-a 1.0 (clash_a:SharedHead) and mtl-hf-clash-b 2.0 (clash_b:SharedHead)" in plain
    assert "'mtl-hf-clash-a:shared_head' or 'mtl-hf-clash-b:shared_head'" in plain
    assert "MTL_HF_PREFER='shared_head=mtl-hf-clash-b'" in plain
    assert report["config"].startswith("OptionsError: tasks.t.type: head 'shared_head' is provided 2 times")
    # a built-in and a plugin
    builtin = report["builtin"]
    assert builtin.startswith("AmbiguousNameError: weighter 'uncertainty' is provided 2 times: by ")
    assert "mtl-hf (built in) (mtl_hf.weighting.uncertainty:UncertaintyWeighting)" in builtin
    assert "mtl-hf-clash-a 1.0 (clash_a_mistakes:MyUncertainty)" in builtin
    assert "'mtl-hf:uncertainty' or 'mtl-hf-clash-a:uncertainty'" in builtin
    assert report["builtin_config"].startswith(
        "OptionsError: weighting.type: weighter 'uncertainty' is provided"
    )

    # picking: a qualified name (any spelling of the distribution), kept by save_pretrained
    assert report["qualified_b"] == "clash_b"
    assert report["qualified_builtin"] == "mtl_hf.weighting.uncertainty"
    assert report["qualified_elsewhere"] == (
        "UnknownNameError: 'mtl-hf-clash-c:shared_head' asks for 'mtl-hf-clash-c', but head 'shared_head' "
        "is provided by 'mtl-hf-clash-a', 'mtl-hf-clash-b' only."
    )
    assert report["saved"] == [
        "mtl-hf-clash-b:shared_head",
        {"mtl-hf-clash-b:shared_head": "mtl-hf-clash-b 2.0"},
    ]
    assert report["reloaded"] == "clash_b"
    # or an environment variable, for every lookup in the process (e.g. loading a saved model)
    assert report["preferred"] == ["clash_a", "mtl_hf.weighting.uncertainty"]
    assert report["prefer_elsewhere"] == (
        "UnknownNameError: MTL_HF_PREFER picks 'mtl-hf-clash-c' for 'shared_head', but head 'shared_head' is "
        "provided by 'mtl-hf-clash-a', 'mtl-hf-clash-b' only."
    )
    assert report["settled_exit"] == 1  # the wrong kinds and signatures remain, the clashes are settled
    assert "is provided 2 times" not in report["settled"]
    assert (
        report["settled"].splitlines()[-1].startswith("4 entry point(s) with problems: head 'half_weights'")
    )

    # the wrong kind, a constructor mtl-hf cannot call, an abstract class: refused, with the reason
    assert report["wrong_kind"].startswith("UnknownNameError: unknown head 'half_weights'.")
    assert (
        "The plugin providing 'half_weights' (mtl-hf-clash-a 1.0, clash_a_mistakes:HalfWeights) is unusable: "
        "HalfWeights is not a TaskHead subclass (its bases: LossWeighter, Module, ABC); the 'mtl_hf.heads' "
        "group holds TaskHead subclasses"
    ) in report["wrong_kind"]
    assert report["wrong_signature"].startswith("OptionsError: tasks.t.type: unknown head 'no_backbone'.")
    assert (
        "its constructor NoBackboneHead(task_name, options) cannot be called as "
        "NoBackboneHead(task_name, options, backbone), as mtl-hf builds every head: too many positional arguments"
    ) in report["wrong_signature"]
    assert "UnfinishedHead does not implement the abstract method(s) forward" in report["abstract"]
    assert (
        "its constructor TemperatureWeighter(task_names, options, temperature) cannot be called as "
        "TemperatureWeighter(task_names, options), as mtl-hf builds every weighter: missing a required "
        "argument: 'temperature'"
    ) in report["weighter_signature"]


def test_mtl_hf_plugins_reports_every_problem_in_words(clashing_sites: list[Path]) -> None:
    done = run_process(["-m", "mtl_hf.cli", "plugins"], sites=clashing_sites)
    assert done.returncode == 1, done.stderr
    rows = {}
    for line in done.stdout.splitlines()[1:]:
        parts = line.split(maxsplit=2)
        if parts[0] in ("head", "weighter"):
            rows.setdefault((parts[0], parts[1]), []).append(parts[2])
    status = {key: [row.split("  ")[-1].strip() for row in value] for key, value in rows.items()}

    assert [row.split()[:2] for row in rows["head", "shared_head"]] == [
        ["mtl-hf-clash-a", "1.0"],
        ["mtl-hf-clash-b", "2.0"],
    ]
    assert all(
        s.startswith("problem: head 'shared_head' is provided 2 times") for s in status["head", "shared_head"]
    )
    assert [row.split()[:3] for row in rows["weighter", "uncertainty"]] == [
        ["mtl-hf", "(built", "in)"],
        ["mtl-hf-clash-a", "1.0", "problem:"],
    ]
    assert status["head", "half_weights"] == [
        "problem: HalfWeights is not a TaskHead subclass (its bases: LossWeighter, Module, ABC); "
        "the 'mtl_hf.heads' group holds TaskHead subclasses"
    ]
    assert status["head", "no_backbone"][0].startswith(
        "problem: its constructor NoBackboneHead(task_name, options)"
    )
    assert status["head", "unfinished"] == [
        "problem: UnfinishedHead does not implement the abstract method(s) forward"
    ]
    assert "missing a required argument: 'temperature'" in status["weighter", "temperature"][0]
    assert status["head", "binary_classification"] == ["ok"] and status["weighter", "fixed"] == ["ok"]
    assert done.stdout.splitlines()[-1] == (
        "8 entry point(s) with problems: head 'half_weights' (mtl-hf-clash-a 1.0), head 'no_backbone' "
        "(mtl-hf-clash-a 1.0), head 'shared_head' (mtl-hf-clash-a 1.0), head 'shared_head' (mtl-hf-clash-b 2.0), "
        "head 'unfinished' (mtl-hf-clash-a 1.0), weighter 'temperature' (mtl-hf-clash-a 1.0), weighter "
        "'uncertainty' (mtl-hf (built in)), weighter 'uncertainty' (mtl-hf-clash-a 1.0). See each status above."
    )
