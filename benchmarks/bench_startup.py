"""Start-up time: ``import mtl_hf`` and ``mtl-hf [COMMAND] --help``, next to importing transformers.

Each case runs in a fresh interpreter (``python -c ...``, the same interpreter and environment as this
script); cases are interleaved round by round so that a busy machine slows them alike, and the median
of the rounds is reported. The first round is a warm-up (it writes ``__pycache__`` and fills the page
cache) and is not counted.

The peer is ``from transformers import PreTrainedModel, PretrainedConfig``, what any transformers model
package has to import. Goals: ``import mtl_hf`` at most 1.3x the peer; ``mtl-hf --help`` and every
``mtl-hf COMMAND --help`` under 0.5 s. ``from mtl_hf import MTLModel, MTLConfig`` (what using the model
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
HELP = (
    "import sys, contextlib, io\n"
    "from mtl_hf.cli import main\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    try:\n"
    "        main({argv!r})\n"
    "    except SystemExit:\n"
    "        pass\n"
    "print(int('torch' in sys.modules), file=sys.stderr)\n"
)


def cases(commands: list[str]) -> dict[str, str]:
    out = {
        "python -c pass (interpreter start-up, the floor)": "pass",
        "peer: " + PEER: PEER,
        "import mtl_hf": "import mtl_hf",
        "from mtl_hf import MTLModel, MTLConfig": "from mtl_hf import MTLModel, MTLConfig",
        "mtl-hf --help": HELP.format(argv=["--help"]),
    }
    for command in commands:
        out[f"mtl-hf {command} --help"] = HELP.format(argv=[command, "--help"])
    return out


def run_once(code: str) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{code!r} failed:\n{done.stderr[-2000:]}")
    return seconds, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""


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
    loads_torch: dict[str, bool] = {}
    for round_index in range(args.rounds + 1):
        for name, code in todo.items():
            seconds, last_line = run_once(code)
            if round_index:
                times[name].append(seconds)
            if "--help" in name:
                loads_torch[name] = last_line == "1"
    medians = {name: statistics.median(values) for name, values in times.items()}
    peer = medians["peer: " + PEER]
    print(f"{'case':55s} {'median s':>9s} {'x peer':>7s}  goal")
    rows = []
    for name, seconds in medians.items():
        if name.startswith("mtl-hf"):
            goal = "< 0.5 s " + ("ok" if seconds < 0.5 else "MISSED")
            goal += " (loads torch)" if loads_torch.get(name) else ""
        elif name == "import mtl_hf":
            goal = "<= 1.3x peer " + ("ok" if seconds <= 1.3 * peer else "MISSED")
        else:
            goal = ""
        rows.append({"case": name, "median_s": seconds, "ratio_to_peer": seconds / peer, "goal": goal})
        print(f"{name:55s} {seconds:9.3f} {seconds / peer:7.2f}  {goal}")
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
