"""A fork server: one Python that has imported torch, transformers and mtl_hf, forking a process per run.

Starting a Python that imports the stack takes seconds; the fault tests start many short training
runs and kill them. The server imports everything once (running no torch operation, so no thread
pool exists yet) and forks a child per request: each child is a real process with its own pid, its
own output file and environment, killed with a real ``SIGKILL`` by the test. Children of a fresh
interpreter and of this server compute the same (the imports are deterministic); the slow tests use
fresh interpreters all the same.

Protocol (JSON lines on stdin / stdout): ``{"launch": module, "argv": [...], "env": {...}, "log": path}``
answers ``{"pid": pid}``; ``{"wait": pid}`` answers ``{"returncode": code}`` (negative: killed by
that signal), as :class:`subprocess.Popen` reports it. The end of its input stops the server.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PRELOAD = (
    "torch",
    "transformers",
    "accelerate",
    "safetensors.torch",
    "datasets",
    "mtl_hf",
    "mtl_hf.train",
    "mtl_hf.training.faults",
    "mtl_hf.security",
    "tests.training.synthetic",
    "tests.reliability.chaos_run",
)


def _child(request: dict[str, Any]) -> None:
    """In the forked child: redirect output, set the environment, run ``module.main(argv)``, exit."""
    code = 1
    try:
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.environ.update(request.get("env", {}))
        module = importlib.import_module(request["launch"])
        sys.argv = [request["launch"], *request["argv"]]
        code = int(module.main(list(request["argv"])) or 0)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if "launch" in request:
            pid = os.fork()
            if pid == 0:
                _child(request)
            print(json.dumps({"pid": pid}), flush=True)
        elif "wait" in request:
            _, status = os.waitpid(int(request["wait"]), 0)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            print(json.dumps({"returncode": code}), flush=True)
    # End of input: exit at once. Tearing down the interpreter (torch, transformers, datasets...)
    # takes seconds of CPU, over 30 s of wall time on a loaded machine, and there is nothing to save.
    os._exit(0)


class Zygote:
    """The test side: start the server, launch children, wait for them."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.zygote"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._read()

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server exited with {self.proc.wait()}")
        return json.loads(line)

    def launch(self, module: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> int:
        return int(self._ask({"launch": module, "argv": argv, "env": env or {}, "log": str(log)})["pid"])

    def wait(self, pid: int) -> int:
        return int(self._ask({"wait": pid})["returncode"])

    def close(self) -> None:
        """End the server's input: it exits at once (``os._exit``), so the wait never depends on how
        busy the machine is."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()


if __name__ == "__main__":
    serve()
