"""Fixtures for the Hub tests: a loopback Hub server and tiny saved models and training runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mtl_hf import MTLConfig, MTLImageProcessor, MTLModel

from .hub_server import HubServer

TOKEN = "hf_TestTokenNeverToBeWritten0123456789"

TINY_BACKBONE = {
    "model_type": "vit",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "image_size": 32,
    "patch_size": 8,
}
TASKS = {"tumour": {"type": "binary_classification"}, "mim": {"type": "mim", "mask_patch_size": 16}}


@pytest.fixture
def hub() -> Iterator[HubServer]:
    """A running loopback Hub whose one valid token is :data:`TOKEN`; unknown calls fail the test."""
    with HubServer(token=TOKEN) as server:
        yield server
    assert not server.unhandled, f"calls the test Hub does not serve: {server.unhandled}"


@pytest.fixture
def no_ambient_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No token from the environment or a saved login leaks into a test."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    monkeypatch.setattr(
        "huggingface_hub.constants.HF_STORED_TOKENS_PATH", str(tmp_path / "hf_home" / "stored_tokens")
    )


def tiny_model(seed: int = 0, name_or_path: str | None = None) -> MTLModel:
    torch.manual_seed(seed)
    config = MTLConfig(backbone_config=dict(TINY_BACKBONE), tasks=TASKS)
    if name_or_path is not None:
        config.backbone_config._name_or_path = name_or_path
    return MTLModel(config).eval()


def write_model_dir(folder: Path, name_or_path: str | None = None) -> Path:
    """A ``save_pretrained`` folder of a tiny model, with its image processor."""
    tiny_model(name_or_path=name_or_path).save_pretrained(folder)
    MTLImageProcessor(size=32, num_channels=3).save_pretrained(folder)
    return folder


def write_run(run: Path, name_or_path: str | None = None) -> Path:
    """A training run folder laid out as ``mtl-hf train`` writes it (tiny model, made-up results)."""
    write_model_dir(run / "best_model", name_or_path)
    (run / "plots").mkdir(parents=True)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
    (run / "plots" / "roc_tumour.png").write_bytes(png)
    (run / "plots" / "loss.png").write_bytes(png[::-1])
    (run / "config.yaml").write_text("model:\n  tasks: [tumour, mim]\ntraining:\n  epochs: 2\n  lr: 0.0001\n")
    records = [
        {"step": 1, "epoch": 0, "split": "train", "loss": 1.25, "loss/tumour": 0.7},
        {"step": 2, "epoch": 0, "split": "val", "roc_auc/tumour": 0.71},
        {"step": 3, "epoch": 1, "split": "train", "loss": 0.875, "loss/tumour": 0.5},
        {"step": 4, "epoch": 1, "split": "val", "roc_auc/tumour": 0.83},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    test_metrics = {
        "tumour": {"roc_auc": 0.8125, "roc_auc_low": 0.7031, "roc_auc_high": 0.9062, "accuracy": 0.75}
    }
    (run / "test_metrics.json").write_text(json.dumps(test_metrics))
    (run / "test_predictions.csv").write_text("patient_id,slice,label,score_tumour\nBraTS-0001,40,1,0.9\n")
    run_info = {"seed": 13, "git_revision": "abc123", "versions": {"torch": "2.13.0"}}
    (run / "run_info.json").write_text(json.dumps(run_info))
    checkpoint = run / "checkpoints" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    (checkpoint / "optimizer.bin").write_bytes(b"not shared")
    save_file({"x": torch.zeros(1)}, str(checkpoint / "model.safetensors"))
    return run


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return write_model_dir(tmp_path / "model")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run")
