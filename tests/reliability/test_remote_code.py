"""Loading an mtl-hf model never runs code shipped with the checkpoint.

A saved model folder (and the same files pushed to a loopback Hub) is given ``modeling_*.py`` and
``configuration_*.py`` files whose import would leave a marker, an ``auto_map`` in ``config.json``
pointing at them, and a task whose head type names that module. A fresh Python loads it with
``AutoModel.from_pretrained`` and no ``trust_remote_code``: the model is ours, the code never runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import torch
from huggingface_hub import HfApi

from mtl_hf import MTLConfig, MTLModel
from tests.hub.hub_server import HubServer
from tests.training.synthetic import TINY_BACKBONE

from .conftest import REPO, subprocess_env

TOKEN = "hf_RemoteCodeTestToken000000000000000"

EVIL = """import pathlib
pathlib.Path(__file__).with_name("CODE-RAN-" + __name__.rsplit(".", 1)[-1]).touch()
pathlib.Path({marker!r}).touch()
from transformers import PretrainedConfig, PreTrainedModel
class EvilConfig(PretrainedConfig):
    model_type = "mtl_vit"
class EvilModel(PreTrainedModel):
    config_class = EvilConfig
"""

LOADER = """
import json, sys
from transformers import AutoConfig, AutoModel
pairs = list(zip(sys.argv[1::2], sys.argv[2::2]))
results = [{} for _ in pairs]
for (source, plugin), found in zip(pairs, results):
    try:  # transformers alone does not know mtl_vit: it must refuse rather than run the folder's code
        AutoModel.from_pretrained(source)
        found["without mtl_hf"] = "loaded"
    except ValueError as exc:
        found["without mtl_hf"] = "trust_remote_code" in str(exc) and "refused"
import mtl_hf
for (source, plugin), found in zip(pairs, results):
    found["config"] = type(AutoConfig.from_pretrained(source)).__name__
    found["model"] = type(AutoModel.from_pretrained(source)).__name__
    found["explicit false"] = type(AutoModel.from_pretrained(source, trust_remote_code=False)).__name__
    try:
        AutoModel.from_pretrained(plugin)
        found["unknown head"] = "loaded"
    except Exception as exc:
        found["unknown head"] = type(exc).__name__ + ": " + str(exc)[:200]
print("RESULTS " + json.dumps(results))
"""


def hostile_folder(folder: Path, marker: Path, head_type: str = "binary_classification") -> Path:
    torch.manual_seed(0)
    config = MTLConfig(
        backbone_config=dict(TINY_BACKBONE), tasks={"tumour": {"type": "binary_classification"}}
    )
    MTLModel(config).save_pretrained(folder)
    for name in ("modeling_evil.py", "configuration_evil.py"):
        (folder / name).write_text(EVIL.format(marker=str(marker)))
    saved = json.loads((folder / "config.json").read_text())
    saved["auto_map"] = {
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoModel": "modeling_evil.EvilModel",
    }
    saved["tasks"]["tumour"]["type"] = head_type
    (folder / "config.json").write_text(json.dumps(saved))
    return folder


def load_in_fresh_python(sources: list[str], tmp_path: Path, **env: str) -> list[dict[str, str]]:
    """For each (model, model with an unknown head) pair of sources: what a fresh Python loads."""
    done = subprocess.run(
        [sys.executable, "-c", LOADER, *sources],
        cwd=tmp_path,  # not the repository: nothing of the test tree is importable by accident
        env={**subprocess_env(HF_HOME=str(tmp_path / "hf_home")), **env, "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,  # transformers asks on a terminal; here the answer is "no"
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.rsplit("RESULTS ", 1)[-1])


def test_code_in_a_model_folder_or_hub_repo_never_runs(tmp_path: Path, figures: Counter[str]) -> None:
    marker = tmp_path / "code-ran"
    folder = hostile_folder(tmp_path / "model", marker)
    plugin = hostile_folder(tmp_path / "plugin", marker, head_type="modeling_evil")
    expected = {
        "without mtl_hf": "refused",
        "config": "MTLConfig",
        "model": "MTLModel",
        "explicit false": "MTLModel",
    }
    with HubServer(token=TOKEN) as hub:
        api = HfApi(endpoint=hub.url, token=TOKEN)
        for name, path in (("tester/hostile", folder), ("tester/hostile-plugin", plugin)):
            api.create_repo(name)
            api.upload_folder(repo_id=name, folder_path=path)
        sources = [str(folder), str(plugin), "tester/hostile", "tester/hostile-plugin"]
        results = load_in_fresh_python(sources, tmp_path, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0")
        downloaded = {r.path.rsplit("/", 1)[-1] for r in hub.requests if r.method == "GET"}
    for found in results:  # a local folder, then a Hub repository
        assert {k: found[k] for k in expected} == expected
        assert found["unknown head"].startswith(
            "OptionsError: tasks.tumour.type: unknown head 'modeling_evil'"
        )
    assert not {"modeling_evil.py", "configuration_evil.py"} & downloaded  # the code is not even fetched
    assert not marker.exists() and not list(tmp_path.rglob("CODE-RAN-*"))
    figures["checkpoints carrying code loaded without running it"] += 4
