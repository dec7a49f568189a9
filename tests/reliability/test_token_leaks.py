"""A Hub token in the environment never reaches a file a run writes, a log, a model card or an error.

A token is planted in ``HF_TOKEN`` (and ``HUGGING_FACE_HUB_TOKEN``) of a real training run and of real
``mtl-hf push`` commands (logging at DEBUG) talking to a loopback Hub over HTTP. Then every byte of the
run folder, the Hugging Face home folder, the captured output, the uploaded files and the requests'
bodies is searched for it; it may appear only in the ``Authorization`` header.
"""

from __future__ import annotations

import json
import secrets
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import pytest
import yaml
from safetensors.torch import load_file, save_file

from mtl_hf.hub import HubPushError, push_to_hub
from tests.hub.hub_server import HubError, HubServer, RecordedRequest
from tests.training.synthetic import base_config

from .conftest import subprocess_env
from .launchers import Launcher, output


def planted_token() -> str:
    return "hf_" + secrets.token_hex(17)


def leaks(token: str, *places: Path) -> list[str]:
    """Files under ``places`` whose bytes contain ``token`` (as text or UTF-16)."""
    needles = (token.encode(), token.encode("utf-16-le"))
    found = []
    for place in places:
        files = [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()]
        found += [str(p) for p in files if any(n in p.read_bytes() for n in needles)]
    return found


def test_planted_token_never_written_by_training_or_push(
    fork_launcher: Launcher, tmp_path: Path, figures: Counter[str]
) -> None:
    token = planted_token()
    home = tmp_path / "hf_home"
    env = {"HF_TOKEN": token, "HUGGING_FACE_HUB_TOKEN": token, "HF_HOME": str(home), "HF_HUB_OFFLINE": "0"}
    run = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(base_config(str(run), epochs=1, strategy="stl")))
    train_log = tmp_path / "train.log"
    training = fork_launcher.start("tests.training.synthetic", [str(config)], train_log, env)
    assert fork_launcher.finish(training, 300) == 0, output(training)[-3000:]
    assert (run / "best_model" / "model.safetensors").exists()

    with HubServer(token=token) as hub:
        push_log = tmp_path / "push.log"
        push = fork_launcher.start(
            "tests.reliability.push_run", [str(run), "tester/leak", "--endpoint", hub.url], push_log, env
        )
        assert fork_launcher.finish(push, 300) == 0, output(push)[-3000:]
        assert "DEBUG" in output(push)  # the logs were on
        uploaded = {
            path: data
            for repo in hub.repos.values()
            for c in repo.commits.values()
            for path, data in c.files.items()
        }
        bodies = [r.body for r in hub.requests]
        authorised = [r for r in hub.requests if r.headers.get("authorization") == f"Bearer {token}"]
    assert "README.md" in uploaded and "model.safetensors" in uploaded and authorised

    with HubServer(token="hf_" + "0" * 34) as other:  # the planted token is refused there
        refused_log = tmp_path / "refused.log"
        refused = fork_launcher.start(
            "tests.reliability.push_run", [str(run), "tester/leak", "--endpoint", other.url], refused_log, env
        )
        assert fork_launcher.finish(refused, 300) == 1
        assert "error: HubPushError: pushing" in output(refused)

    assert leaks(token, run, home, train_log, push_log, refused_log) == []
    assert not [p for p, data in uploaded.items() if token.encode() in data]
    assert not [b for b in bodies if token.encode() in b]
    figures["planted tokens searched for in run, push and error output (never found)"] += 1


class EchoingHub(HubServer):
    """A Hub (or a proxy before it) that quotes the request's credentials in its error messages."""

    def _require_write(self, request: RecordedRequest) -> None:
        raise HubError(
            401, f"Invalid credentials in Authorization header: {request.headers.get('authorization')}"
        )


def test_token_quoted_back_by_the_server_is_removed_from_the_error(
    tmp_path: Path, figures: Counter[str]
) -> None:
    from tests.hub.conftest import write_run

    token = planted_token()
    run = write_run(tmp_path / "run")
    with EchoingHub(token=token) as hub, pytest.raises(HubPushError) as info:
        push_to_hub(run, "tester/leak", token=token, endpoint=hub.url)
    assert hub.requests and token in hub.requests[-1].headers["authorization"]
    assert token not in str(info.value) and token not in repr(info.value) and "***" in str(info.value)
    assert info.value.__suppress_context__  # the client's own error, which quotes it, is not shown
    figures["planted tokens searched for in run, push and error output (never found)"] += 1


# -- every file pushed is searched, binary ones and safetensors metadata included ------------------------
def escaped_metadata(path: Path, token: str) -> None:
    """Rewrite a safetensors file with the token in its metadata as JSON escapes (``\\u0068f_...``),
    which a search of the raw bytes does not find."""
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    header["__metadata__"] = {"note": "pushed by " + token}
    text = json.dumps(header).replace(token, "".join(f"\\u{ord(c):04x}" for c in token))
    assert token not in text
    encoded = text.encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + raw[8 + size :])


def plant(run: Path, case: str, token: str) -> Path:
    model = run / "best_model"
    if case == "train.log":
        (model / "train.log").write_text(f"step 10 loss 0.5\nHF_TOKEN={token}\n")
        return model / "train.log"
    if case == "slurm output in UTF-16":
        (model / "slurm-4242.out").write_bytes(f"export HF_TOKEN={token}\n".encode("utf-16-le"))
        return model / "slurm-4242.out"
    if case == "safetensors metadata":
        weights = load_file(model / "model.safetensors")
        save_file(weights, model / "model.safetensors", metadata={"pushed_by": token})
        return model / "model.safetensors"
    if case == "safetensors metadata, JSON-escaped":
        escaped_metadata(model / "model.safetensors", token)
        assert load_file(model / "model.safetensors")  # still a valid file
        return model / "model.safetensors"
    if case == "plot (binary)":
        png = run / "plots" / "roc_tumour.png"
        png.write_bytes(png.read_bytes() + b"tEXt" + token.encode())
        return png
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "train.log",
        "slurm output in UTF-16",
        "safetensors metadata",
        "safetensors metadata, JSON-escaped",
        "plot (binary)",
    ],
)
def test_every_file_to_upload_is_searched_for_the_token(
    tmp_path: Path, case: str, figures: Counter[str]
) -> None:
    from tests.hub.conftest import write_run

    token = planted_token()
    run = write_run(tmp_path / "run")
    planted = plant(run, case, token)
    with HubServer(token=token) as hub, pytest.raises(HubPushError) as info:
        push_to_hub(run, "tester/leak", token=token, endpoint=hub.url)
    assert str(info.value).startswith(f"{planted} contains the Hugging Face access token")
    assert token not in str(info.value)
    assert hub.requests == []  # refused before anything was sent
    figures["planted tokens searched for in run, push and error output (never found)"] += 1


# -- every path that talks to the Hub: errors that quote the token are redacted ---------------------------
class EchoingReadHub(HubServer):
    """A Hub (or a proxy) that answers every download with an error quoting the request's credentials."""

    def _repo(self, request: RecordedRequest, repo_id: str) -> Any:
        raise HubError(
            401, f"Invalid credentials in Authorization header: {request.headers.get('authorization')}"
        )


HUB_CALLS = """
import sys, traceback
sys.stderr = sys.stdout  # each call's messages in its own section
from mtl_hf.cli import main
from mtl_hf import MTLModel
from mtl_hf.inference import load_model_and_processor
calls = {
    "train": lambda: main(["train", sys.argv[1], "model.backbone=tester/vit"]),
    "from_backbone": lambda: MTLModel.from_backbone("tester/vit"),
    "from_pretrained": lambda: MTLModel.from_pretrained("tester/model"),
    "predict": lambda: main(["predict", "tester/model", sys.argv[3], "-o", sys.argv[4]]),
    "predict loader": lambda: load_model_and_processor("tester/model"),
    "explicit token": lambda: MTLModel.from_pretrained("tester/model", token=sys.argv[2]),
}
for name, call in calls.items():
    print(f"== {name}", flush=True)
    try:
        print(f"returned {call()}")
    except BaseException:
        traceback.print_exc(file=sys.stdout)
"""


def test_a_hub_quoting_the_token_in_errors_never_gets_it_printed(
    tmp_path: Path, figures: Counter[str]
) -> None:
    token, explicit = planted_token(), planted_token()
    config = tmp_path / "run.yaml"
    run = base_config(str(tmp_path / "run"), epochs=1, strategy="stl")
    run["data"] = {"kind": "brats", "root": str(tmp_path)}  # present: training gets as far as the Hub
    config.write_text(yaml.safe_dump(run))
    image = tmp_path / "scan.png"
    PIL.Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(image)
    with EchoingReadHub(token=token) as hub:
        done = subprocess.run(
            [sys.executable, "-c", HUB_CALLS, str(config), explicit, str(image), str(tmp_path / "predicted")],
            cwd=tmp_path,
            env=subprocess_env(
                HF_TOKEN=token, HF_HOME=str(tmp_path / "hf_home"), HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0"
            ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        sent = [r.headers.get("authorization", "") for r in hub.requests]
    text = done.stdout + done.stderr
    sections = dict(part.split("\n", 1) for part in text.split("== ")[1:])
    assert set(sections) == {
        "train",
        "from_backbone",
        "from_pretrained",
        "predict",
        "predict loader",
        "explicit token",
    }, text[-3000:]
    for name, shown in sections.items():
        assert "Authorization header: Bearer ***" in shown, (name, shown[-2000:])
    assert f"Bearer {token}" in sent and f"Bearer {explicit}" in sent  # the server did quote them
    assert token not in text and explicit not in text
    assert leaks(token, tmp_path / "run") == [] and leaks(explicit, tmp_path / "run") == []
    figures["planted tokens searched for in run, push and error output (never found)"] += len(sections)
