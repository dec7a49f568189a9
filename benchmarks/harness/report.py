"""The harness's report: what ran where, and the Markdown tables printed at the end of a run."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .cases import MEMORY_GOALS, case_named
from .speed import Ratio, Timing, mfu


@dataclass
class BenchReport:
    """Everything one harness run measured, as written to JSON."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)
    ratios: list[dict[str, Any]] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    overhead: dict[str, Any] = field(default_factory=dict)
    precision: dict[str, Any] = field(default_factory=dict)


def machine_info(device: torch.device, threads: int) -> dict[str, Any]:
    """What ran the benchmark: CPU model, cores, torch threads, load, library versions, GPU."""
    import transformers

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "host": platform.node(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "device": str(device),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def layout_advice(ratio: Ratio, margin: float = 0.03) -> str:
    """Which ``MTLConfig.view_layout`` to use here, from the measured concat / two-pass step ratio:
    ``concat`` only when it wins by more than ``margin`` on both the median and the fastest calls
    (its one large batch costs more peak memory)."""
    wins = ratio.value < 1 - margin and ratio.value_of_min < 1 - margin
    choice = "concat" if wins else "two_pass"
    return (
        f"View layout for this device: `{choice}` (concat / two_pass step = {ratio.value:.3f} median, "
        f"{ratio.value_of_min:.3f} fastest; concat is chosen only when it wins by more than "
        f"{100 * margin:.0f} % on both, since it holds both views' activations in one batch)."
    )


CLOCK_NAMES = {"wall": "wall-clock time", "cpu": "process CPU time"}


def format_report(report: BenchReport, timings: dict[str, Timing], ratios: list[Ratio]) -> str:
    m = report.machine
    lines = [
        f"## {m['cpu']} ({m['cpu_count']} cores), device {m['device']}"
        + (f" ({m['gpu']})" if "gpu" in m else ""),
        "",
        f"size {report.settings['size']}, batch {report.settings['batch_size']}, torch threads "
        f"{m['torch_threads']}, rounds {report.settings['rounds']} (+{report.settings['warmup']} warm-up), "
        f"load average {m['loadavg_start']} at start, {m.get('loadavg_end')} at end; "
        f"torch {m['torch']}, transformers {m['transformers']}",
        "",
    ]
    if timings:
        clock = next(iter(timings.values())).clock
        other = "wall" if clock == "cpu" else "cpu"
        lines += [
            f"Times by {CLOCK_NAMES[clock]} (and median by {CLOCK_NAMES[other]}); MFU by {CLOCK_NAMES[clock]}.",
            "",
            f"| case | what | median ms | min ms | median ms ({other}) | img/s | GFLOP/call | MFU | "
            "page faults/call |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for t in timings.values():
            u = mfu(t, timings)
            other_ms = f"{1e3 * statistics.median(t.other_times_s):.1f}" if t.other_times_s else "-"
            lines.append(
                f"| {t.name} | {t.description} | {1e3 * t.median_s:.1f} | {1e3 * t.min_s:.1f} | {other_ms} | "
                + (f"{t.images_per_s:.1f}" if t.images else "-")
                + " | "
                + (f"{t.flops / 1e9:.1f}" if t.flops else "-")
                + " | "
                + (f"{100 * u:.0f} %" if u is not None else "-")
                + (f" | {statistics.median(t.page_faults):.0f}" if t.page_faults else " | -")
                + " |"
            )
        lines += [
            "",
            f"| ratio (same run) | median of per-round ({clock}) | of fastest ({clock}) | "
            f"median of per-round ({other}) | goal | met ({clock} median) |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for r in ratios:
            goal = "-" if r.goal is None else ("≥ " if r.higher_is_better else "≤ ") + f"{r.goal:.2f}"
            met = "-" if r.met is None else ("yes" if r.met else "NO")
            other_value = f"{r.other_value:.3f}" if r.other_value is not None else "-"
            lines.append(
                f"| {r.name} | {r.value:.3f} | {r.value_of_min:.3f} | {other_value} | {goal} | {met} |"
            )
        layout = next((r for r in ratios if r.name == "mtl (concat) / mtl (two_pass)"), None)
        if layout is not None:
            lines += ["", layout_advice(layout)]
    if report.memory:
        mem = report.memory
        unit = "peak allocated" if mem["metric"] == "peak_allocated_mb" else "peak RSS (VmHWM)"
        heap = mem.get("heap_ratios")
        malloc = ", ".join(f"{k}={v}" for k, v in mem.get("malloc_env", {}).items()) or "glibc defaults"
        lines += [
            "",
            f"Memory ({unit}{' and peak heap in use' if heap else ''}, batch {mem['batch_size']}, each case "
            f"in a fresh process; allocator: {malloc}):",
            "",
        ]
        lines += ["| case | what | MB | heap in use, MB |", "|---|---|---:|---:|"]
        for case, r in mem["cases"].items():
            in_use = f"{r['peak_heap_mb']:.0f}" if "peak_heap_mb" in r else "-"
            lines.append(f"| {case} | {case_named(case).description} | {r[mem['metric']]:.0f} | {in_use} |")
        lines += [
            "",
            "| memory ratio | of peaks | of peaks above idle | heap in use: of peaks | above idle | goal |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, ratio in mem["ratios"].items():
            in_use = heap.get(name, {}) if heap else {}
            cells = [ratio["peak"], ratio.get("above_idle"), in_use.get("peak"), in_use.get("above_idle")]
            shown = " | ".join("-" if v is None else f"{v:.2f}" for v in cells)
            limit = MEMORY_GOALS.get(name)
            lines.append(f"| {name} | {shown} | {f'≤ {limit}' if limit else '-'} |")
        profiled = {case: r["tensors"] for case, r in mem["cases"].items() if "tensors" in r}
        if profiled:
            kinds = sorted({k for t in profiled.values() for k in t["by_kind_mb"]})
            lines += [
                "",
                "Live tensors at their peak (one more step under PyTorch's profiler), MB by kind:",
                "",
                f"| case | peak | {' | '.join(kinds)} |",
                "|---|---:|" + "---:|" * len(kinds),
            ]
            for case, t in profiled.items():
                by_kind = " | ".join(f"{t['by_kind_mb'].get(k, 0.0):.0f}" for k in kinds)
                lines.append(f"| {case} | {t['peak_mb']:.0f} | {by_kind} |")
            lines += ["", "| tensor peak ratio | of peaks | goal |", "|---|---:|---:|"]
            for name, ratio in mem.get("tensor_ratios", {}).items():
                limit = MEMORY_GOALS.get(name)
                lines.append(f"| {name} | {ratio['peak']:.2f} | {f'≤ {limit}' if limit else '-'} |")
    if report.overhead:
        o = report.overhead
        lines += ["", "Fixed cost per call (one-layer 32-wide ViT, one 2x2-patch image; median µs):", ""]
        lines += ["| call | µs |", "|---|---:|"]
        lines += [f"| {name} | {value:.0f} |" for name, value in o["microseconds"].items()]
        for key in (
            "stl - hf_cls, train forward",
            "stl - hf_cls, eval forward",
            "mtl - (hf_cls + hf_mim), train forward",
        ):
            share = ""
            step = {"train": "stl", "eval": "stl_infer", "mtl": "mtl"}
            case = step["mtl"] if key.startswith("mtl") else step["eval" if "eval" in key else "train"]
            if case in timings:
                extra = o[key] + o["input check at the benchmark batch"]
                share = (
                    f" (with the input check: {100 * extra * 1e-6 / timings[case].median_s:.2f} % of {case})"
                )
            lines.append(f"| {key} | {o[key]:+.0f}{share} |")
    if report.optimizer:
        opt = report.optimizer
        lines += ["", f"AdamW step over {opt['parameters'] / 1e6:.1f} M parameters:", ""]
        lines += ["| implementation | ms | / fastest |", "|---|---:|---:|"]
        for name, ms in opt["ms_per_step"].items():
            lines.append(f"| {name} | {ms:.1f} | {opt['relative_to_fastest'][name]:.2f} |")
    if report.precision:
        lines += ["", "bf16 autocast vs fp32, same batch and mask:", ""]
        lines += [
            "| model | max abs Δ logits (max abs logit) | rel Δ loss per task | grad cosine |",
            "|---|---:|---|---:|",
        ]
        for base, p in report.precision.items():
            losses = ", ".join(f"{t} {v:.1e}" for t, v in p["loss_rel_diff"].items())
            lines.append(
                f"| {base} | {p['logits_max_abs_diff']:.2e} ({p['logits_max_abs']:.2f}) | {losses} | "
                f"{p['grad_cosine']:.4f} |"
            )
    return "\n".join(lines)
