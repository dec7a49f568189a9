"""Weights load only from safetensors; pickles from strangers are refused, and never executed.

Every hostile pickle here carries a payload that would create a marker file if it ran; each test
checks the marker is absent afterwards.
"""

from __future__ import annotations

import ast
import json
import pickle
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.checkpointing import load_custom_state
from safetensors.torch import load_file
from transformers import AutoModel

from mtl_hf import MTLConfig, MTLModel
from mtl_hf.inference import load_model_and_processor
from mtl_hf.security import (
    UnsafeCheckpointError,
    check_training_checkpoint,
    check_weights_folder,
    unsafe_globals,
)
from tests.training.synthetic import TINY_BACKBONE


class Payload:
    """Unpickling this runs ``Path(marker).touch()``: stands for any code an attacker wants run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))  # type: ignore[return-value]


def tiny_model() -> MTLModel:
    torch.manual_seed(0)
    return MTLModel(
        MTLConfig(backbone_config=dict(TINY_BACKBONE), tasks={"tumour": {"type": "binary_classification"}})
    )


def pickle_only_folder(folder: Path, marker: Path) -> Path:
    """A saved model whose weights were replaced by a ``pytorch_model.bin`` that runs code when loaded."""
    tiny_model().save_pretrained(folder)
    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save({"weights": weights, "extra": Payload(marker)}, folder / "pytorch_model.bin")
    return folder


def test_pickle_only_model_folder_is_refused_with_an_explanation(
    tmp_path: Path, figures: Counter[str]
) -> None:
    marker = tmp_path / "code-ran"
    folder = pickle_only_folder(tmp_path / "model", marker)
    expected = r"no safetensors weights \(model.safetensors\), only pickle files: pytorch_model.bin\. Loading a pickle can run"
    with pytest.raises(UnsafeCheckpointError, match=expected):
        check_weights_folder(folder)
    for load in (AutoModel.from_pretrained, MTLModel.from_pretrained):
        with pytest.raises(UnsafeCheckpointError, match=expected):
            load(folder)
    with pytest.raises(UnsafeCheckpointError, match=expected):
        load_model_and_processor(folder)
    # opted in, transformers still unpickles with weights_only=True: the payload cannot run
    with pytest.raises(Exception, match="Weights only load failed"):
        MTLModel.from_pretrained(folder, allow_pickle=True)
    assert not marker.exists()
    figures["hostile pickles and pickle-only folders refused (payload never run)"] += 1


def test_plain_pickled_weights_load_only_when_the_user_opts_in(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    model = tiny_model()
    model.save_pretrained(folder)
    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(weights, folder / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError):
        AutoModel.from_pretrained(folder)
    loaded = AutoModel.from_pretrained(folder, allow_pickle=True)
    assert all(
        torch.equal(a, b)
        for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True)
    )


def test_config_pointing_at_a_pickle_and_weights_only_false_are_refused(
    tmp_path: Path, figures: Counter[str]
) -> None:
    folder = tmp_path / "model"
    tiny_model().save_pretrained(folder)
    with pytest.raises(UnsafeCheckpointError, match="use_safetensors=False loads pickles"):
        AutoModel.from_pretrained(folder, use_safetensors=False)
    with pytest.raises(UnsafeCheckpointError, match="weights_only=False loads pickles"):
        AutoModel.from_pretrained(folder, weights_only=False)
    config = json.loads((folder / "config.json").read_text())
    config["transformers_weights"] = "adapter_model.bin"  # transformers would torch.load this file
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        UnsafeCheckpointError, match="config.json asks for the weights file 'adapter_model.bin'"
    ):
        AutoModel.from_pretrained(folder)
    figures["hostile pickles and pickle-only folders refused (payload never run)"] += 3


# -- training checkpoints ---------------------------------------------------------------------------------
def real_checkpoint(folder: Path) -> Path:
    """What ``mtl-hf train`` saves: accelerate's ``save_state`` of a model and its AdamW state."""
    accelerator = Accelerator(cpu=True)
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, optimizer = accelerator.prepare(model, optimizer)
    model(pixel_values=torch.randn(2, 1, 32, 32), labels={"tumour": torch.tensor([0.0, 1.0])}).loss.backward()
    optimizer.step()
    accelerator.save_state(str(folder), safe_serialization=True)
    (folder / "trainer_state.json").write_text("{}")
    return folder


def hostile_zip_pickle(path: Path, marker: Path) -> Path:
    torch.save({"state": {}, "param_groups": [], "x": Payload(marker)}, path)
    return path


def test_our_checkpoints_pass_and_planted_pickles_are_refused_unexecuted(
    tmp_path: Path, figures: Counter[str]
) -> None:
    marker = tmp_path / "code-ran"
    checkpoint = real_checkpoint(tmp_path / "checkpoint")
    check_training_checkpoint(checkpoint)  # ours: model in safetensors, pickles of tensors and numpy only
    assert sorted(p.name for p in checkpoint.iterdir()) == [
        "model.safetensors",
        "optimizer.bin",
        "random_states_0.pkl",
        "trainer_state.json",
    ]

    hostile_zip_pickle(checkpoint / "optimizer.bin", marker)
    with pytest.raises(
        UnsafeCheckpointError,
        match=r"optimizer.bin: the pickle names builtins.getattr, pathlib.Path, outside",
    ):
        check_training_checkpoint(checkpoint)

    (checkpoint / "optimizer.bin").write_bytes(pickle.dumps(Payload(marker)))  # legacy, not a zip archive
    with pytest.raises(UnsafeCheckpointError, match="not a torch.save archive"):
        check_training_checkpoint(checkpoint)

    real_checkpoint(checkpoint)
    (checkpoint / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(
        UnsafeCheckpointError,
        match="custom_checkpoint_0.pkl, which accelerate unpickles with weights_only=False",
    ):
        check_training_checkpoint(checkpoint)
    (checkpoint / "custom_checkpoint_0.pkl").unlink()

    (checkpoint / "random_states_0.pkl").rename(checkpoint / "elsewhere.pkl")
    with pytest.raises(
        UnsafeCheckpointError, match="no random_states_0.pkl: not a complete mtl-hf checkpoint"
    ):
        check_training_checkpoint(checkpoint)
    (checkpoint / "elsewhere.pkl").rename(checkpoint / "random_states_0.pkl")

    weights = load_file(checkpoint / "model.safetensors")
    (checkpoint / "model.safetensors").unlink()
    torch.save(weights, checkpoint / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match=r"the model state is a pickle \(pytorch_model.bin\)"):
        check_training_checkpoint(checkpoint)
    assert not marker.exists()
    figures["hostile pickles and pickle-only folders refused (payload never run)"] += 4


def test_what_accelerate_does_with_planted_pickles(tmp_path: Path) -> None:
    """Why the check exists: accelerate 1.x reads optimizer / RNG pickles with ``weights_only=True``
    (a planted payload fails to load), but objects registered for checkpointing with
    ``weights_only=False``: a planted ``custom_checkpoint_0.pkl`` runs its code."""
    marker = tmp_path / "code-ran"
    checkpoint = real_checkpoint(tmp_path / "checkpoint")
    hostile_zip_pickle(checkpoint / "optimizer.bin", marker)
    accelerator = Accelerator(cpu=True)
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, optimizer = accelerator.prepare(model, optimizer)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        accelerator.load_state(str(checkpoint))
    assert not marker.exists()
    assert sorted(unsafe_globals(checkpoint / "optimizer.bin")) == ["builtins.getattr", "pathlib.Path"]

    class Registered:
        def load_state_dict(self, state: object) -> None:
            pass

    torch.save(Payload(marker), checkpoint / "custom_checkpoint_0.pkl")
    load_custom_state(Registered(), str(checkpoint), 0)
    assert marker.exists(), "accelerate's custom states are unpickled with weights_only=False"


def test_no_call_in_the_package_unpickles_with_weights_only_false() -> None:
    import mtl_hf

    root = Path(mtl_hf.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    value = keyword.value
                    if (
                        keyword.arg == "weights_only"
                        and isinstance(value, ast.Constant)
                        and value.value is False
                    ):
                        offenders.append(f"{path.relative_to(root)}:{node.lineno}")
        if "pickle.load" in path.read_text():
            offenders.append(f"{path.relative_to(root)}: pickle.load")
    assert offenders == []


# -- sharded weights: the index names the files transformers reads -------------------------------------
def sharded_folders(root: Path, marker: Path) -> dict[str, Path]:
    """Saved models whose ``model.safetensors.index.json`` points at a pickle shard, at a plain pickle
    of the real weights, at safetensors outside the folder, and a sound sharded model."""
    folders = {}
    for name in ("payload shard", "pickled shard", "outside", "sound"):
        folder = root / name.replace(" ", "-")
        tiny_model().save_pretrained(folder)
        weights = load_file(folder / "model.safetensors")
        if name == "sound":
            shard = "model-00001-of-00001.safetensors"
            (folder / "model.safetensors").rename(folder / shard)
        elif name == "outside":
            shard = "../elsewhere/model.safetensors"
            (root / "elsewhere").mkdir(exist_ok=True)
            (folder / "model.safetensors").rename(root / "elsewhere" / "model.safetensors")
        else:
            shard = "pytorch_model-00001-of-00001.bin"
            (folder / "model.safetensors").unlink()
            torch.save(
                weights if name == "pickled shard" else {**weights, "x": Payload(marker)}, folder / shard
            )
        index = {"metadata": {"total_size": 0}, "weight_map": dict.fromkeys(weights, shard)}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
        folders[name] = folder
    return folders


SHARD_REFUSALS = {
    "payload shard": r"model.safetensors.index.json: the index points at 'pytorch_model-00001-of-00001.bin': "
    r"shards must be .safetensors files in the same folder",
    "pickled shard": r"the index points at 'pytorch_model-00001-of-00001.bin'",
    "outside": r"the index points at '../elsewhere/model.safetensors'",
}


def test_an_index_pointing_at_a_pickle_shard_or_outside_the_folder_is_refused(
    tmp_path: Path, figures: Counter[str]
) -> None:
    marker = tmp_path / "code-ran"
    folders = sharded_folders(tmp_path, marker)
    for name, expected in SHARD_REFUSALS.items():
        for load in (AutoModel.from_pretrained, MTLModel.from_pretrained, load_model_and_processor):
            with pytest.raises(UnsafeCheckpointError, match=expected):
                load(folders[name])
        figures["hostile pickles and pickle-only folders refused (payload never run)"] += 1
    # the backbone of a new model: a plain ViT folder whose index points at a pickle
    tiny_model().backbone.save_pretrained(tmp_path / "vit")
    (tmp_path / "vit" / "model.safetensors.index.json").write_text(
        (folders["pickled shard"] / "model.safetensors.index.json").read_text().replace('"backbone.', '"')
    )
    with pytest.raises(UnsafeCheckpointError, match=SHARD_REFUSALS["pickled shard"]):
        MTLModel.from_backbone(str(tmp_path / "vit"), tasks={"tumour": {"type": "binary_classification"}})
    # a sound sharded model loads, and opting in to pickles accepts a pickle shard, never a path
    sound = AutoModel.from_pretrained(folders["sound"])
    assert all(
        torch.equal(a, b)
        for a, b in zip(sound.state_dict().values(), tiny_model().state_dict().values(), strict=True)
    )
    opted_in = AutoModel.from_pretrained(folders["pickled shard"], allow_pickle=True)
    assert torch.equal(
        opted_in.state_dict()["heads.tumour.classifier.weight"],
        sound.state_dict()["heads.tumour.classifier.weight"],
    )
    with pytest.raises(UnsafeCheckpointError, match=SHARD_REFUSALS["outside"]):
        AutoModel.from_pretrained(folders["outside"], allow_pickle=True)
    assert not marker.exists()


HUB_LOADER = """
import json, sys
import mtl_hf
from mtl_hf import MTLModel
from transformers import AutoModel
results = {}
for repo in sys.argv[1:]:
    try:
        if repo.endswith("vit"):
            MTLModel.from_backbone(repo, tasks={"tumour": {"type": "binary_classification"}})
        else:
            AutoModel.from_pretrained(repo)
        results[repo] = "loaded"
    except Exception as exc:
        results[repo] = type(exc).__name__ + ": " + str(exc)
print("RESULTS " + json.dumps(results))
"""


def test_a_hub_repository_whose_index_points_at_a_pickle_shard_is_refused_before_download(
    tmp_path: Path, figures: Counter[str]
) -> None:
    from huggingface_hub import HfApi

    from tests.hub.hub_server import HubServer

    from .conftest import REPO, subprocess_env

    marker = tmp_path / "code-ran"
    folders = sharded_folders(tmp_path / "models", marker)
    tiny_model().backbone.save_pretrained(tmp_path / "vit")
    (tmp_path / "vit" / "model.safetensors").unlink()
    (tmp_path / "vit" / "model.safetensors.index.json").write_text(
        (folders["pickled shard"] / "model.safetensors.index.json").read_text().replace('"backbone.', '"')
    )
    torch.save(
        load_file(folders["sound"] / "model-00001-of-00001.safetensors"),
        tmp_path / "vit" / "pytorch_model-00001-of-00001.bin",
    )
    token = "hf_ShardIndexTestToken0000000000000000"
    repos = {
        "tester/payload-shard": folders["payload shard"],
        "tester/pickled-shard": folders["pickled shard"],
        "tester/sound": folders["sound"],
        "tester/pickle-vit": tmp_path / "vit",
    }
    with HubServer(token=token) as hub:
        api = HfApi(endpoint=hub.url, token=token)
        for repo, folder in repos.items():
            api.create_repo(repo)
            api.upload_folder(repo_id=repo, folder_path=folder)
        done = subprocess.run(
            [sys.executable, "-c", HUB_LOADER, *repos],
            cwd=tmp_path,
            env={
                **subprocess_env(HF_HOME=str(tmp_path / "hf_home")),
                "HF_ENDPOINT": hub.url,
                "HF_HUB_OFFLINE": "0",
                "PYTHONPATH": str(REPO),
            },
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        downloaded = [r.path for r in hub.requests if r.method == "GET" and "/resolve/" in r.path]
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.rsplit("RESULTS ", 1)[-1])
    assert results.pop("tester/sound") == "loaded"
    for repo, found in results.items():
        assert found.startswith(
            f"UnsafeCheckpointError: {repo}/model.safetensors.index.json: the index points at 'pytorch_model-00001-of-00001.bin'"
        ), found
    assert not [p for p in downloaded if p.endswith(".bin")]  # refused before any shard was fetched
    assert not marker.exists()
    figures["hostile pickles and pickle-only folders refused (payload never run)"] += len(results)
