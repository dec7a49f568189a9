"""Start-up time: ``import mtl_hf`` and ``mtl-hf [COMMAND] --help``, next to importing transformers.

Each case runs in a fresh interpreter (``python -c ...``, the same interpreter and environment as this
script); cases are interleaved round by round so that a busy machine slows them alike, and the median
of the rounds is reported. The first round is a warm-up (it writes ``__pycache__`` and fills the page
cache) and is not counted.

The peer of the import is ``from transformers import PreTrainedModel, PretrainedConfig``, what any
transformers model package has to import; the peer of the command line is ``hf --help``
(huggingface_hub's command line, built to start fast), run the same way. Goals: ``import mtl_hf`` at
most 1.3x its peer; ``mtl-hf --help`` and every ``mtl-hf COMMAND --help`` under 0.5 s, loading none of
torch, transformers, datasets, accelerate (a help that loads one is flagged). ``from mtl_hf import MTLModel, MTLConfig`` (what using the model
costs) is reported next to the peer too, and a bare ``python -c pass`` shows what the interpreter alone
costs on this machine under its current load (the 0.5 s goal assumes an idle machine).

Usage::

    python benchmarks/bench_startup.py                 # 5 rounds, every command
    python benchmarks/bench_startup.py --rounds 9 --json benchmarks/results/startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PEER = "from transformers import PreTrainedModel, PretrainedConfig"
CLI_PEER = "peer: hf --help (huggingface_hub)"
HEAVY = ("torch", "transformers", "datasets", "accelerate")
HELP = (
    "import sys, contextlib, io\n"
    "{load}\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    try:\n"
    "        main({argv})\n"
    "    except SystemExit:\n"
    "        pass\n"
    f"print(','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
)


def mtl_hf_help(argv: list[str]) -> str:
    return HELP.format(load="from mtl_hf.cli import main", argv=repr(argv))


def cases(commands: list[str]) -> dict[str, str]:
    out = {
        "python -c pass (interpreter start-up, the floor)": "pass",
        "peer: " + PEER: PEER,
        "import mtl_hf": "import mtl_hf",
        "from mtl_hf import MTLModel, MTLConfig": "from mtl_hf import MTLModel, MTLConfig",
        CLI_PEER: HELP.format(
            load="sys.argv = ['hf', '--help']\nfrom huggingface_hub.cli.hf import main", argv=""
        ),
        "mtl-hf --help": mtl_hf_help(["--help"]),
    }
    for command in commands:
        out[f"mtl-hf {command} --help"] = mtl_hf_help([command, "--help"])
    return out


def run_once(code: str) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{code!r} failed:\n{done.stderr[-2000:]}")
    lines = done.stderr.splitlines()
    return seconds, lines[-1] if lines else ""


def main(argv: list[str] | None = None) -> int:
    from mtl_hf.cli import COMMANDS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="counted rounds (default 5) after one warm-up")
    parser.add_argument(
        "--commands", nargs="*", default=list(COMMANDS), help="commands whose --help is timed"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    todo = cases(args.commands)
    times: dict[str, list[float]] = {name: [] for name in todo}
    loads_heavy: dict[str, str] = {}
    for round_index in range(args.rounds + 1):
        for name, code in todo.items():
            seconds, last_line = run_once(code)
            if round_index:
                times[name].append(seconds)
            if "--help" in name:
                loads_heavy[name] = last_line
    medians = {name: statistics.median(values) for name, values in times.items()}
    peer, cli_peer = medians["peer: " + PEER], medians[CLI_PEER]
    print(f"{'case':55s} {'median s':>9s} {'x peer':>7s}  goal")
    rows = []
    for name, seconds in medians.items():
        if name.startswith("mtl-hf"):
            ratio, against = seconds / cli_peer, "hf --help"
            goal = "< 0.5 s " + ("ok" if seconds < 0.5 else "MISSED")
            goal += f" (loads {loads_heavy[name]})" if loads_heavy.get(name) else ""
        else:
            ratio, against = seconds / peer, "transformers import"
            goal = (
                "<= 1.3x peer " + ("ok" if seconds <= 1.3 * peer else "MISSED")
                if name == "import mtl_hf"
                else ""
            )
        rows.append(
            {"case": name, "median_s": seconds, "ratio_to_peer": ratio, "peer": against, "goal": goal}
        )
        print(f"{name:55s} {seconds:9.3f} {ratio:7.2f}  {goal}")
    print("x peer: help rows against hf --help, the others against the transformers import")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.rounds} rounds (+1 warm-up), fresh interpreters, interleaved; load average {load:.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"rounds": args.rounds, "load_average": load, "cases": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
