"""A model trained with a plugin weighter that holds parameters and buffers, saved, then loaded where that
weighter's distribution is gone: it loads for inference with ``fixed`` and a warning, gives the same
outputs, and ``from_pretrained(..., weighting=...)`` chooses the weighter instead. Where the plugin is
installed, the weighter's state comes back as saved, and the model card names its distribution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import install_distribution, run_python

LEARNED_WEIGHTS = '''
import torch
from torch import nn
from transformers import initialization as init

from mtl_hf.weighting import LossWeighter


class LearnedWeights(LossWeighter):
    """w_i = exp(-s_i) with s learned, and a buffer counting the weighted forward passes."""

    def __init__(self, task_names, options):
        super().__init__(task_names, options)
        self.log_weights = nn.Parameter(torch.zeros(len(self.state_names)))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def init_parameters(self):
        init.zeros_(self.log_weights)

    def weights(self, losses):
        self.calls += 1
        return {name: torch.exp(-self.log_weights[self.task_index(name)]) for name in losses}
'''

TINY = (
    '{"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,'
    ' "intermediate_size": 64, "image_size": 32, "patch_size": 8}'
)

TRAIN_AND_SAVE = f"""
import json, sys, warnings
import torch
import mtl_hf
from mtl_hf import MTLConfig, MTLModel
from mtl_hf.hub import render_model_card
from safetensors.torch import save_file
from transformers import AutoModel

torch.manual_seed(0)
model = MTLModel(MTLConfig(backbone_config={TINY}, weighting={{"type": "learned_weights"}},
                           tasks={{"tumour": {{"type": "binary_classification"}}, "mim": {{"type": "mim"}}}}))
optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
x = torch.randn(4, 3, 32, 32)
for _ in range(2):
    out = model(x, labels={{"tumour": torch.tensor([0, 1, 0, 1])}})
    out.loss.backward()
    optimizer.step()
    optimizer.zero_grad()
model.eval()
model.save_pretrained(sys.argv[1])
with torch.no_grad():
    logits = model(x).logits["tumour"]
save_file({{"x": x, "logits": logits}}, sys.argv[2])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    reloaded = AutoModel.from_pretrained(sys.argv[1])
print(json.dumps({{
    "trained": model.weighter.log_weights.tolist(),
    "calls": int(model.weighter.calls),
    "reloaded": [type(reloaded.weighter).__name__, reloaded.weighter.log_weights.tolist(),
                 int(reloaded.weighter.calls)],
    "warnings": [str(w.message) for w in caught if "weight" in str(w.message)],
    "weighter_source": reloaded.config.weighter_source,
    "card": str(render_model_card(sys.argv[1], "lab/x")),
}}))
"""

LOAD_WITHOUT_PLUGIN = f"""
import json, sys, warnings
import torch
import mtl_hf
from mtl_hf import MTLConfig, MTLModel
from mtl_hf.configuration_mtl import WeighterReplacedWarning
from safetensors.torch import load_file
from transformers import AutoModel

saved = load_file(sys.argv[2])
report = {{}}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model, info = AutoModel.from_pretrained(sys.argv[1], output_loading_info=True)
report["warnings"] = [str(w.message) for w in caught if issubclass(w.category, WeighterReplacedWarning)]
report["weighter"] = [type(model.weighter).__name__, model.config.weighting, model.config.weighter_source]
report["loading_info"] = {{key: sorted(map(str, value)) for key, value in info.items() if value}}
with torch.no_grad():
    report["same_logits"] = torch.equal(model.eval()(saved["x"]).logits["tumour"], saved["logits"])

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    chosen = MTLModel.from_pretrained(sys.argv[1], weighting={{"type": "fixed", "weights": {{"mim": 0.25}}}})
    learned = AutoModel.from_pretrained(sys.argv[1], weighting={{"type": "uncertainty"}})
report["override_warnings"] = [str(w.message) for w in caught if issubclass(w.category, WeighterReplacedWarning)]
report["chosen"] = [type(chosen.weighter).__name__, chosen.weighter.lambdas, chosen.config.weighting]
report["uncertainty"] = [type(learned.weighter).__name__, learned.weighter.log_variances.tolist()]
from mtl_hf.inference.loading import load_model_and_processor  # what mtl-hf predict loads with

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for_predict, _processor = load_model_and_processor(sys.argv[1])
report["predict_loader"] = [type(for_predict.weighter).__name__, len(caught and [
    w for w in caught if issubclass(w.category, WeighterReplacedWarning)])]
try:
    MTLConfig(backbone_config={TINY}, weighting={{"type": "learned_weights"}})
except Exception as exc:
    report["built_directly"] = f"{{type(exc).__name__}}: {{exc}}"
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def weighter_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_distribution(
        tmp_path_factory.mktemp("learned"),
        "mtl-hf-learned-weights",
        "0.3",
        {"mtl_hf.weighters": {"learned_weights": "learned_weights:LearnedWeights"}},
        {"learned_weights": LEARNED_WEIGHTS},
    )


def test_a_model_loads_without_its_plugin_weighter(weighter_site: Path, tmp_path: Path) -> None:
    model_dir, tensors = str(tmp_path / "model"), str(tmp_path / "tensors.safetensors")
    trained = json.loads(run_python(TRAIN_AND_SAVE, model_dir, tensors, sites=[weighter_site]))

    # with the plugin: the weighter's parameter and buffer come back as trained, without a warning
    assert trained["calls"] == 2 and all(value != 0.0 for value in trained["trained"])
    assert trained["reloaded"] == ["LearnedWeights", trained["trained"], 2]
    assert trained["warnings"] == [] and trained["weighter_source"] == "mtl-hf-learned-weights 0.3"
    assert "pip install mtl-hf mtl-hf-learned-weights\n" in trained["card"]
    assert "`learned_weights` weighter from mtl-hf-learned-weights 0.3" in trained["card"]

    report = json.loads(run_python(LOAD_WITHOUT_PLUGIN, model_dir, tensors))
    (warning,) = report["warnings"]
    assert warning.startswith(
        "weighting.type: the saved weighter 'learned_weights' is not available here (it was provided by "
        "'mtl-hf-learned-weights 0.3': install that distribution to train on with it); the model is loaded "
        "with weighting {'type': 'fixed'} instead"
    )
    assert "Cause: unknown weighter 'learned_weights'. Available: cagrad, dwa, famo, fixed," in warning
    assert report["weighter"] == ["FixedWeights", {"type": "fixed"}, None]
    assert report["loading_info"] == {}  # the saved weighter's state is left aside, not reported missing
    assert report["same_logits"]

    # the caller's weighting replaces the saved one before it is looked up: no warning
    assert report["override_warnings"] == []
    assert report["chosen"] == [
        "FixedWeights",
        {"tumour": 1.0, "mim": 0.25},
        {"type": "fixed", "weights": {"mim": 0.25}},
    ]
    assert report["uncertainty"] == ["UncertaintyWeighting", [0.0, 0.0]]  # initialised, not loaded
    assert report["predict_loader"] == ["FixedWeights", 1]
    # a config written by hand must still name a weighter that exists
    assert report["built_directly"].startswith(
        "OptionsError: weighting.type: unknown weighter 'learned_weights'. Available:"
    )
