"""Run ``mtl-hf demo`` and write what came out into the README, between its demo-results markers.

    python docs/demo_results.py                      # runs the demo in runs/demo (data in demo_data)
    python docs/demo_results.py --no-run             # only re-renders from an existing runs/demo

Copies the low-data figure to ``docs/demo_low_data.png`` and replaces the block between
``<!-- demo-results:begin -->`` and ``<!-- demo-results:end -->`` of ``README.md`` with: what the data
are, the figure, the tables and findings of ``low_data.md`` (rendered by mtl-hf from the runs, not
edited), and what the run cost (wall and CPU time per part, machine load). Nothing is typed by hand.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- demo-results:begin -->", "<!-- demo-results:end -->"
FIGURE = "docs/demo_low_data.png"
STRATEGIES = {"stl": "STL", "pretrain": "pre-training", "mtl": "MTL"}


def run_demo(out: Path, data: Path) -> None:
    print(f"load average before: {os.getloadavg()}", flush=True)
    command = [str(Path(sys.executable).with_name("mtl-hf")), "demo", "--out", str(out), "--data", str(data)]
    subprocess.run(command, check=True)
    print(f"load average after: {os.getloadavg()}", flush=True)


def cost_lines(out: Path) -> list[str]:
    """What the demo cost, from ``demo_timing.json`` and the runs' timings in ``compare_info.json``."""
    timing = json.loads((out / "demo_timing.json").read_text())
    info = json.loads((out / "brats" / "compare_info.json").read_text())
    strategy_of = {}
    with (out / "brats" / "results.csv").open() as handle:
        for row in csv.DictReader(handle):
            strategy_of[row["run_dir"]] = (row["strategy"], float(row["train_fraction"]))
    cpu: dict[str, float] = defaultdict(float)
    for run in info["timing"]["runs"]:
        strategy, _ = strategy_of.get(run["output_dir"], ("other", 0.0))
        cpu[strategy] += run["cpu_seconds"]
    parts = timing["parts"]
    data = parts.get("data", {})
    data_cpu = data.get("cpu_seconds_main_process", 0.0) + data.get("cpu_seconds_workers", 0.0)
    runs_cpu = sum(cpu.values())
    main_cpu = parts["brats"]["cpu_seconds_main_process"]
    workers = timing["workers"]
    quiet = (data_cpu + runs_cpu) / workers + main_cpu
    wall = data.get("wall_seconds", 0.0) + parts["brats"]["wall_seconds"]
    loads = [
        part.get(key)
        for part in (data, parts["brats"])
        for key in ("load_average_at_start", "load_average_at_end")
    ]
    loads = [x for x in loads if x is not None] or [timing.get("load_average_at_start", [0.0])[0]]
    per_strategy = ", ".join(f"{STRATEGIES.get(s, s)} {cpu[s]:.0f} s" for s in STRATEGIES if s in cpu)
    return [
        f"The run above took {wall / 60:.1f} min of wall time on a {timing['cpu_count']}-core CPU "
        f"({timing['cpu']}) shared with other jobs (load average {min(loads):.1f} to {max(loads):.1f} "
        f"on its {timing['cpu_count']} cores), with {workers} runs trained at a time.",
        f"CPU time: building the data {data_cpu:.0f} s; the 27 runs {runs_cpu:.0f} s ({per_strategy}); "
        f"the rest (data cache, tables, bootstrap, figures, attention maps) {main_cpu:.0f} s.",
        f"On a quiet {workers}-core machine, that is about {quiet / 60:.1f} min: the data and the runs "
        f"spread over {workers} processes, the rest in one (an estimate from CPU time; CPU time measured "
        "on a busy machine is itself inflated by the other jobs, so the estimate errs long).",
    ]


def block(out: Path) -> str:
    study = (out / "brats" / "low_data.md").read_text(encoding="utf-8")
    study = study.replace("### ", "#### ")
    study = "\n".join(line for line in study.splitlines() if not line.startswith("![Low-data study]"))
    lines = [
        BEGIN,
        "",
        "The demo data are synthetic patients: real brain anatomy (the MNI152 template shipped with nilearn, "
        "warped per patient) with synthetic tumours drawn by a random generator (see the data card written "
        "next to them). The labels come from that generator, so these numbers show what the software "
        "measures and how precisely, not how the strategies compare on real patients.",
        "",
        f"![Low-data study of the demo]({FIGURE})",
        "",
        study.strip(),
        "",
        "#### What it cost",
        "",
        *[f"{line}\n" for line in cost_lines(out)],
        "_Written by `python docs/demo_results.py` from the demo's outputs._",
        "",
        END,
    ]
    return "\n".join(lines)


def update_readme(out: Path, readme: Path) -> None:
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme}: no {BEGIN} ... {END} block to replace")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + block(out) + tail
    with tempfile.NamedTemporaryFile("w", dir=readme.parent, delete=False, encoding="utf-8") as handle:
        handle.write(new)
    os.replace(handle.name, readme)
    figure = out / "brats" / "plots" / "low_data_tumour.png"
    shutil.copyfile(figure, ROOT / FIGURE)
    print(f"{readme} and {ROOT / FIGURE} updated")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "demo", help="demo output folder")
    parser.add_argument("--data", type=Path, default=ROOT / "demo_data", help="demo data folder")
    parser.add_argument("--no-run", action="store_true", help="render from an existing demo output")
    args = parser.parse_args()
    if not args.no_run:
        run_demo(args.out, args.data)
    update_readme(args.out, ROOT / "README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
