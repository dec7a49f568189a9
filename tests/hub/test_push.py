"""Pushing over real HTTP to a loopback Hub, then loading with transformers' Auto classes in a fresh process."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from safetensors.torch import load_file, save_file

from mtl_hf import MTLImageProcessor, MTLModel
from mtl_hf.hub import HubPushError, ModelCardOptions, push_to_hub

from .conftest import TOKEN
from .hub_server import HubServer, git_blob_id

LOADER = Path(__file__).with_name("load_from_hub.py")
WRITE_ACTIONS = ("create_repo", "create_branch", "preupload", "commit", "validate_yaml")


def load_in_fresh_process(
    hub: HubServer, tmp_path: Path, repo_id: str, revision: str, token: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Inputs, and the outputs of the model and processor loaded from the Hub by a new Python process
    whose ``HF_ENDPOINT`` is the loopback Hub and whose cache is empty."""
    generator = torch.Generator().manual_seed(7)
    inputs = {
        "pixel_values": torch.randn(2, 3, 32, 32, generator=generator),
        "bool_masked_pos": torch.rand(2, 16, generator=generator) < 0.5,
        "image": torch.randint(0, 256, (40, 48), generator=generator, dtype=torch.uint8),
    }
    inputs_path, outputs_path = tmp_path / "inputs.safetensors", tmp_path / "outputs.safetensors"
    save_file(inputs, str(inputs_path))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(tmp_path / "fresh_hf_home"),
        HF_HUB_CACHE=str(tmp_path / "fresh_cache"),
        HF_HUB_DISABLE_TELEMETRY="1",
        OMP_NUM_THREADS="1",
    )
    if token is not None:
        env["HF_TOKEN"] = token
    done = subprocess.run(
        [sys.executable, str(LOADER), repo_id, revision, str(inputs_path), str(outputs_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert any((tmp_path / "fresh_cache").rglob("model.safetensors")), "the weights did not come from the Hub"
    return inputs, load_file(str(outputs_path))


def assert_same_outputs(
    model_dir: Path, inputs: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]
) -> None:
    original = MTLModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        expected = original(pixel_values=inputs["pixel_values"], bool_masked_pos=inputs["bool_masked_pos"])
    torch.testing.assert_close(outputs["tumour"], expected.logits["tumour"], rtol=0, atol=0)
    torch.testing.assert_close(outputs["mim"], expected.reconstructions["mim"], rtol=0, atol=0)
    processor = MTLImageProcessor.from_pretrained(model_dir)
    processed = processor(inputs["image"].numpy().astype(np.uint8), return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(outputs["processed"], processed, rtol=0, atol=0)


def test_push_model_folder_and_load_it_back_with_automodel(
    hub: HubServer, model_dir: Path, tmp_path: Path, no_ambient_token: None
) -> None:
    result = push_to_hub(model_dir, "lab/tiny-mtl", token=TOKEN, endpoint=hub.url)

    assert result.repo_id == "lab/tiny-mtl" and result.revision == "main"
    assert sorted(result.files) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert hub.file("lab/tiny-mtl", name) == (model_dir / name).read_bytes()
    assert hub.repos["lab/tiny-mtl"].branches["main"] == result.commit_oid
    (commit,) = hub.requests_to("commit")
    assert commit.path == "/api/models/lab/tiny-mtl/commit/main"
    assert json.loads(commit.body.splitlines()[0])["value"]["summary"] == "Upload tiny-mtl with mtl-hf"
    assert hub.requests_to("create_repo")[0].json() == {"name": "tiny-mtl", "organization": "lab"}
    assert len(hub.requests_to("validate_yaml")) == 1  # the card's metadata passed the Hub's check
    for request in hub.requests:
        assert request.headers.get("authorization") == f"Bearer {TOKEN}"

    n_before = len(hub.requests)
    inputs, outputs = load_in_fresh_process(hub, tmp_path, "lab/tiny-mtl", "main")
    assert_same_outputs(model_dir, inputs, outputs)
    downloads = hub.requests[n_before:]
    # transformers resolves "main" to its commit, then fetches each file at that commit.
    assert ("GET", "/api/models/lab/tiny-mtl/revision/main") in [(r.method, r.path) for r in downloads]
    fetched = {r.path for r in downloads if r.method == "GET"}
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert f"/lab/tiny-mtl/resolve/{result.commit_oid}/{name}" in fetched
    assert all("authorization" not in r.headers for r in downloads)  # a public repo needs no token

    # Pushing the same folder again: the repo exists (409 accepted), every file is unchanged, so no
    # commit is made and the current head is returned.
    again = push_to_hub(model_dir, "lab/tiny-mtl", token=TOKEN, endpoint=hub.url)
    assert again.commit_oid == result.commit_oid
    assert len(hub.requests_to("commit")) == 1


def test_push_run_folder_privately_to_a_branch(
    hub: HubServer, run_dir: Path, tmp_path: Path, no_ambient_token: None
) -> None:
    result = push_to_hub(
        run_dir,
        "lab/brats-mtl",
        private=True,
        revision="v1",
        commit_message="first BraTS run",
        token=TOKEN,
        endpoint=hub.url,
        card=ModelCardOptions(datasets=["lab/brats-slices"]),
    )

    assert hub.requests_to("create_repo")[0].json()["visibility"] == "private"
    assert hub.repos["lab/brats-mtl"].private
    assert [r.path for r in hub.requests_to("create_branch")] == ["/api/models/lab/brats-mtl/branch/v1"]
    (commit,) = hub.requests_to("commit")
    assert commit.path == "/api/models/lab/brats-mtl/commit/v1"
    assert json.loads(commit.body.splitlines()[0])["value"]["summary"] == "first BraTS run"
    assert result.revision == "v1"
    assert sorted(result.files) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "plots/loss.png",
        "plots/roc_tumour.png",
        "preprocessor_config.json",
        "training/config.yaml",
        "training/metrics.jsonl",
        "training/run_info.json",
        "training/test_metrics.json",
    ]
    for path in result.files:
        if path == "README.md":
            assert "lab/brats-slices" in hub.file("lab/brats-mtl", path, "v1").decode()
            continue
        folder, name = path.split("/") if "/" in path else ("best_model", path)
        source = run_dir / {"training": ".", "plots": "plots", "best_model": "best_model"}[folder] / name
        assert hub.file("lab/brats-mtl", path, "v1") == source.read_bytes(), path
    main = hub.repos["lab/brats-mtl"].resolve("main")
    assert main is not None and list(main.files) == [".gitattributes"]  # main is untouched

    # Anonymous readers do not see a private repo; the token holder does.
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(
            "lab/brats-mtl",
            "config.json",
            revision="v1",
            endpoint=hub.url,
            token=False,
            cache_dir=tmp_path / "anon",
        )
    inputs, outputs = load_in_fresh_process(hub, tmp_path, "lab/brats-mtl", "v1", token=TOKEN)
    assert_same_outputs(run_dir / "best_model", inputs, outputs)


def test_the_token_is_sent_as_a_header_and_written_nowhere(
    hub: HubServer,
    run_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    no_ambient_token: None,
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # the usual way: from the environment
    caplog.set_level(logging.DEBUG)
    result = push_to_hub(run_dir, "lab/secret-check", endpoint=hub.url)

    assert [r.headers["authorization"] for r in hub.requests_to("commit")] == [f"Bearer {TOKEN}"]
    stored = hub.repos["lab/secret-check"].resolve(result.revision)
    assert stored is not None
    for path, content in stored.files.items():
        assert TOKEN.encode() not in content, path
    captured = capsys.readouterr()
    assert TOKEN not in caplog.text + captured.out + captured.err
    for file in run_dir.rglob("*"):
        assert not file.is_file() or TOKEN.encode() not in file.read_bytes(), file


def test_the_token_saved_by_hf_auth_login_is_used(
    hub: HubServer, model_dir: Path, no_ambient_token: None
) -> None:
    from huggingface_hub import constants

    Path(constants.HF_TOKEN_PATH).parent.mkdir(parents=True, exist_ok=True)
    Path(constants.HF_TOKEN_PATH).write_text(TOKEN)
    push_to_hub(model_dir, "my-model", endpoint=hub.url)  # no namespace: the token owner's
    assert "tester/my-model" in hub.repos
    assert {r.headers["authorization"] for r in hub.requests} == {f"Bearer {TOKEN}"}


def test_a_rejected_token_does_not_appear_in_the_error(
    hub: HubServer, model_dir: Path, no_ambient_token: None
) -> None:
    wrong = "hf_WrongTokenThatMustNotBeEchoed42"
    with pytest.raises(HubPushError) as excinfo:
        push_to_hub(model_dir, "lab/x", token=wrong, endpoint=hub.url)
    assert "401" in str(excinfo.value) and "lab/x" in str(excinfo.value)
    shown = "".join(traceback.format_exception(excinfo.value))
    assert wrong not in shown and TOKEN not in shown
    assert hub.requests and all(r.headers["authorization"] == f"Bearer {wrong}" for r in hub.requests)
    assert not hub.repos


def test_without_a_token_nothing_is_sent(hub: HubServer, model_dir: Path, no_ambient_token: None) -> None:
    with pytest.raises(HubPushError, match="HF_TOKEN"):
        push_to_hub(model_dir, "lab/x", endpoint=hub.url)
    assert hub.requests == []


def test_a_file_holding_the_token_is_refused_before_upload(
    hub: HubServer, run_dir: Path, no_ambient_token: None
) -> None:
    (run_dir / "config.yaml").write_text(f"hub:\n  token: {TOKEN}\n")
    with pytest.raises(HubPushError, match=r"config\.yaml contains the Hugging Face access token") as excinfo:
        push_to_hub(run_dir, "lab/x", token=TOKEN, endpoint=hub.url)
    assert TOKEN not in str(excinfo.value)
    assert hub.requests == []


def test_calls_the_test_hub_does_not_serve_fail_loudly(hub: HubServer) -> None:
    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo("lab/x")
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.list_repo_commits("lab/x")
    assert excinfo.value.response.status_code == 501
    assert [(r.method, r.path) for r in hub.unhandled] == [("GET", "/api/models/lab/x/commits/main")]
    hub.unhandled.clear()  # seen and asserted; the fixture checks that no other test leaves any


def test_server_blob_ids_are_git_object_ids() -> None:
    # `git hash-object` of a file holding "hello\n"
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_a_malformed_run_fails_before_anything_is_uploaded(
    hub: HubServer, run_dir: Path, no_ambient_token: None
) -> None:
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "split": "train"}\nnot json\n')
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2: not a JSON object"):
        push_to_hub(run_dir, "lab/x", token=TOKEN, endpoint=hub.url)
    assert hub.requests == []
