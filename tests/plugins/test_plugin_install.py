"""A third-party plugin distribution, built and pip-installed here, seen by mtl-hf in fresh processes:
found by name, trained, saved and reloaded; missing, it is named in the error; broken, it is reported
and ``import mtl_hf`` still works."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from mtl_hf.plugins_report import PluginRow, plugin_rows, plugins_table

from .conftest import pip_install_target, run_python

PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "mtl-hf-toy-plugins"
version = "1.2.3"
dependencies = ["mtl-hf"]

[project.entry-points."mtl_hf.heads"]
mean_intensity = "mtl_hf_toy_plugins:MeanIntensityHead"
broken_head = "mtl_hf_toy_broken:BrokenHead"

[project.entry-points."mtl_hf.weighters"]
halves = "mtl_hf_toy_plugins:HalfWeights"

[tool.setuptools]
py-modules = ["mtl_hf_toy_plugins", "mtl_hf_toy_broken"]
"""

TOY_PLUGINS = '''
"""A regression head and a weighter, as a third party would write them."""
import torch.nn.functional as F
from torch import nn

from mtl_hf.heads import HeadOutput, TaskHead
from mtl_hf.weighting import LossWeighter


class MeanIntensityHead(TaskHead):
    """Predict each image's mean pixel value from its CLS token; MSE loss."""

    def __init__(self, task_name, options, backbone):
        super().__init__(task_name, options, backbone)
        self.regressor = nn.Linear(backbone.hidden_size, 1)

    def forward(self, features, labels=None):
        prediction = self.regressor(features.cls_token)[:, 0]
        loss = None if labels is None else F.mse_loss(prediction, labels.float())
        return HeadOutput(loss=loss, logits=prediction)


class HalfWeights(LossWeighter):
    def weights(self, losses):
        return {name: loss.new_tensor(0.5) for name, loss in losses.items()}
'''

TOY_BROKEN = 'raise RuntimeError("this plugin is broken on purpose")\n'

WITH_PLUGIN = """
import json, sys
import torch
import mtl_hf
from mtl_hf import HEADS, MTLConfig, MTLModel
from mtl_hf.plugins_report import plugins_table
from transformers import AutoModel

report = {"imported_eagerly": sorted(m for m in sys.modules if m.startswith("mtl_hf_toy"))}
report["head"] = HEADS.get("mean_intensity").__qualname__
entry = HEADS.source_of("mean_intensity")
report["source"] = [entry.source, entry.distribution, entry.version]
try:
    HEADS.get("broken_head")
except Exception as exc:
    report["broken_error"] = f"{type(exc).__name__}: {exc}"
report["entry_errors"] = {e.name: e.error for e in HEADS.entries()}
try:
    MTLConfig(tasks={"x": {"type": "broken_head"}})
except Exception as exc:
    report["broken_config_error"] = str(exc)

torch.manual_seed(0)
backbone = {"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64, "image_size": 32, "patch_size": 8}
model = MTLModel(MTLConfig(backbone_config=backbone, weighting={"type": "halves"},
                           tasks={"intensity": {"type": "mean_intensity"}, "tumour": {"type": "binary_classification"}}))
model.train()
x = torch.randn(4, 3, 32, 32)
labels = {"intensity": x.mean(dim=(1, 2, 3)), "tumour": torch.tensor([0, 1, 0, 1])}
before = model.head("intensity").regressor.weight.detach().clone()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
out = model(x, labels=labels)
out.loss.backward()
optimizer.step()
report["loss"] = [out.loss.item(), out.task_losses["intensity"].item(), out.task_losses["tumour"].item()]
report["weights"] = {k: v.item() for k, v in out.task_weights.items()}
report["head_trained"] = not torch.equal(before, model.head("intensity").regressor.weight)

model.eval()
model.save_pretrained(sys.argv[1])
reloaded = AutoModel.from_pretrained(sys.argv[1]).eval()
with torch.no_grad():
    report["same_after_reload"] = torch.equal(reloaded(x).logits["intensity"], model(x).logits["intensity"])
report["head_sources"] = json.load(open(sys.argv[1] + "/config.json"))["head_sources"]
report["table"] = plugins_table()
print(json.dumps(report))
"""

WITHOUT_PLUGIN = """
import sys
import mtl_hf
from transformers import AutoModel
try:
    AutoModel.from_pretrained(sys.argv[1])
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
else:
    print("loaded")
"""


@pytest.fixture(scope="module")
def toy_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy distribution built from source and installed with ``pip install --no-deps --target``."""
    root = tmp_path_factory.mktemp("toy")
    source = root / "mtl-hf-toy-plugins"
    source.mkdir()
    (source / "pyproject.toml").write_text(PYPROJECT)
    (source / "mtl_hf_toy_plugins.py").write_text(textwrap.dedent(TOY_PLUGINS))
    (source / "mtl_hf_toy_broken.py").write_text(TOY_BROKEN)
    site = root / "site"
    pip_install_target(source, site)
    assert (site / "mtl_hf_toy_plugins-1.2.3.dist-info" / "entry_points.txt").is_file()
    return site


def test_an_installed_plugin_trains_saves_reloads_and_a_broken_one_is_reported(
    toy_site: Path, tmp_path: Path
) -> None:
    report = json.loads(run_python(WITH_PLUGIN, str(tmp_path / "model"), site=toy_site))

    assert report["imported_eagerly"] == []  # import mtl_hf loads no plugin, broken or not
    assert report["head"] == "MeanIntensityHead"
    assert report["source"] == ["mtl-hf-toy-plugins 1.2.3", "mtl-hf-toy-plugins", "1.2.3"]

    cause = "RuntimeError: this plugin is broken on purpose"
    assert report["broken_error"].startswith("UnknownNameError: unknown head 'broken_head'")
    assert (
        f"The plugin providing 'broken_head' (mtl-hf-toy-plugins 1.2.3) failed to import: {cause}"
        in report["broken_error"]
    )
    assert report["entry_errors"]["broken_head"] == cause and report["entry_errors"]["mean_intensity"] is None
    assert cause in report["broken_config_error"]  # using it in a config gives the cause too

    total, intensity, tumour = report["loss"]
    assert report["weights"] == {"intensity": 0.5, "tumour": 0.5}
    assert total == pytest.approx(0.5 * intensity + 0.5 * tumour, rel=1e-6)
    assert report["head_trained"] and report["same_after_reload"]
    assert report["head_sources"] == {"mean_intensity": "mtl-hf-toy-plugins 1.2.3"}

    lines = report["table"].splitlines()
    assert lines[0].split() == ["kind", "name", "source", "status"]
    assert any(
        line.split() == ["head", "mean_intensity", "mtl-hf-toy-plugins", "1.2.3", "ok"] for line in lines
    )
    assert any(line.split() == ["weighter", "halves", "mtl-hf-toy-plugins", "1.2.3", "ok"] for line in lines)
    assert any(
        line.split()[:4] == ["head", "broken_head", "mtl-hf-toy-plugins", "1.2.3"]
        and line.endswith(f"failed: {cause}")
        for line in lines
    )
    assert lines[-1].startswith("1 plugin(s) failed to import: head 'broken_head'.")

    # Where the plugin is not installed, loading names the head and the distribution to install.
    message = run_python(WITHOUT_PLUGIN, str(tmp_path / "model"))
    assert message.startswith("OptionsError: tasks.intensity.type: unknown head 'mean_intensity'")
    assert "It was provided by 'mtl-hf-toy-plugins 1.2.3': install that distribution." in message


def test_builtins_are_listed_with_their_source() -> None:
    rows = plugin_rows()
    assert PluginRow("head", "mim", "mtl-hf (built in)") in rows
    assert PluginRow("head", "binary_classification", "mtl-hf (built in)") in rows
    assert PluginRow("weighter", "fixed", "mtl-hf (built in)") in rows
    kinds = [r.kind for r in rows]
    assert kinds == sorted(kinds, key=["head", "weighter"].index)  # heads first, then weighters


def test_the_table_aligns_columns_and_reports_failures() -> None:
    rows = [
        PluginRow("head", "mim", "mtl-hf (built in)"),
        PluginRow("head", "seg", "mtl-hf-segmentation 0.1.0"),
        PluginRow("weighter", "odd", "odd-dist 2.0", error="ImportError: no module named 'scipy_x'"),
    ]
    assert plugins_table(rows) == "\n".join(
        [
            "kind      name  source                     status",
            "head      mim   mtl-hf (built in)          ok",
            "head      seg   mtl-hf-segmentation 0.1.0  ok",
            "weighter  odd   odd-dist 2.0               failed: ImportError: no module named 'scipy_x'",
            "1 plugin(s) failed to import: weighter 'odd'. Fix or uninstall the distribution.",
        ]
    )
