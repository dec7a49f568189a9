"""Weights load only from safetensors; pickles from strangers are refused, and never executed.

Every hostile pickle here carries a payload that would create a marker file if it ran; each test
checks the marker is absent afterwards.
"""

from __future__ import annotations

import ast
import json
import pickle
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
