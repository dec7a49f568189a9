"""A Hub token in the environment never reaches a file a run writes, a log, a model card or an error.

A token is planted in ``HF_TOKEN`` (and ``HUGGING_FACE_HUB_TOKEN``) of a real training run and of real
``mtl-hf push`` commands (logging at DEBUG) talking to a loopback Hub over HTTP. Then every byte of the
run folder, the Hugging Face home folder, the captured output, the uploaded files and the requests'
bodies is searched for it; it may appear only in the ``Authorization`` header.
"""

from __future__ import annotations

import secrets
from collections import Counter
from pathlib import Path

import pytest
import yaml

from mtl_hf.hub import HubPushError, push_to_hub
from tests.hub.hub_server import HubError, HubServer, RecordedRequest
from tests.training.synthetic import base_config

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
        assert fork_launcher.finish(refused, 300) == 2
        assert "error: pushing" in output(refused)

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
