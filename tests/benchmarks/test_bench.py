"""The step harness (``python -m benchmarks.harness``): cases from their fields, FLOP counts against
hand formulas, ratios against their timings, a tiny run's report, a new step mode, memory ratios."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from benchmarks.harness import cases as case_tables
from benchmarks.harness.cases import IDLE, SPEED_CASES, Case, case_named
from benchmarks.harness.cli import main
from benchmarks.harness.memory import (
    HeapPeak,
    heap_in_use_mb,
    memory_child,
    memory_ratios,
    memory_suite,
    peak_rss_mb,
    tensor_peak,
)
from benchmarks.harness.overhead import overhead_suite
from benchmarks.harness.speed import compute_ratios, paired_ratio, speed_suite
from benchmarks.harness.steps import STEP_MODES, Run, step_mode, train_step
from benchmarks.harness.workbench import Workbench

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "image_size": 32,
    "patch_size": 8,
    "encoder_stride": 8,
    "num_channels": 3,
    "qkv_bias": True,
    "layer_norm_eps": 1e-6,
}
CPU = torch.device("cpu")


@pytest.fixture
def tiny_size(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setitem(case_tables.SIZES, "tiny", TINY)
    monkeypatch.setitem(case_tables.DEFAULT_BATCH, "tiny", 4)
    monkeypatch.setitem(case_tables.DEFAULT_MEMORY_BATCH, "tiny", 4)
    yield "tiny"


def vit_forward_flops(d: int, mlp: int, layers: int, patches: int, channels: int, patch: int) -> int:
    """Multiply-adds x 2 of a ViT forward with a one-logit linear head on CLS."""
    t = patches + 1
    per_layer = 4 * 2 * t * d * d + 2 * 2 * t * t * d + 2 * 2 * t * d * mlp  # qkv+out, scores+mix, MLP
    return layers * per_layer + 2 * patches * channels * patch * patch * d + 2 * d


def test_case_names_come_from_their_fields() -> None:
    assert Case("mtl", view_layout="concat").name == "mtl_concat"
    assert Case("mtl_mae", checkpointing=True, precision="bf16").name == "mtl_mae_ckpt_bf16"
    assert Case("hf_cls", mode="infer", precision="bf16").name == "hf_cls_infer_bf16"
    assert Case("matmul", mode="ceiling").name == "matmul_fp32" and IDLE.name == "stl_idle"
    for name, case in {**SPEED_CASES, **case_tables.MEMORY_CASES}.items():
        assert case_named(name) == case and case.name == name
    with pytest.raises(ValueError, match="unknown case 'mtl_fast'; choose from .*hf_cls"):
        case_named("mtl_fast")
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        Case("vgg")


def test_flop_counts_match_the_hand_formula() -> None:
    work = Workbench(TINY, 4, CPU, cases=[Case("stl"), Case("hf_cls"), Case("mtl")])
    forward = vit_forward_flops(32, 64, 2, 16, 3, 8)
    patch_embedding = 2 * 16 * 3 * 8 * 8 * 32
    assert work.count_flops(Case("stl", mode="infer")) == 4 * forward
    assert work.count_flops(Case("mtl", mode="infer")) == 4 * forward  # eval: one clean pass, MIM idle
    # Backward doubles every matmul except the patch embedding's, whose input needs no gradient.
    assert work.count_flops(Case("stl")) == 4 * (3 * forward - patch_embedding)
    assert work.count_flops(Case("hf_cls")) == work.count_flops(Case("stl"))
    # model FLOPs: no recomputation counted, whatever ran before
    work.setup(Case("stl", checkpointing=True))()
    assert work.count_flops(Case("stl", checkpointing=True, precision="bf16")) == work.count_flops(
        Case("stl")
    )


def test_paired_ratio_is_the_median_of_per_round_ratios() -> None:
    times = {"a": [2.0, 4.0, 3.0], "b": [1.0, 1.0, 2.0], "c": [1.0, 3.0, 1.0]}
    value, fastest = paired_ratio(times, "a", ("b", "c"))
    assert value == statistics.median([2.0 / 2.0, 4.0 / 4.0, 3.0 / 3.0]) == 1.0
    assert fastest == pytest.approx(2.0 / (1.0 + 1.0))
    ratios = {r.name: r for r in compute_ratios({"stl": [1.03, 1.0], "hf_cls": [1.0, 1.0]})}
    r = ratios["stl step / hf_cls step"]
    assert r.value == pytest.approx(1.015) and r.met is True
    ratios = {r.name: r for r in compute_ratios({"stl_infer": [1.1, 1.1], "hf_cls_infer": [1.0, 1.0]})}
    r = ratios["stl infer img/s / hf_cls infer img/s"]
    assert r.value == pytest.approx(1 / 1.1) and r.higher_is_better and r.met is False


def test_a_tiny_run_writes_consistent_json(tmp_path: Path, tiny_size: str) -> None:
    out = tmp_path / "bench.json"
    args = ["--size", tiny_size, "--threads", "1", "--rounds", "3", "--warmup", "0", "--cpu"]
    assert main([*args, "--suites", "speed,precision,optimizer", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    timings = report["timings"]
    assert report["machine"]["torch_threads"] == 1 and report["settings"]["batch_size"] == 4
    assert {"hf_cls", "hf_mim", "stl", "mtl", "mtl_concat", "mtl_mae", "matmul_fp32"} <= set(timings)
    assert all(len(t["times_s"]) == 3 for t in timings.values())
    ratios = {r["name"]: r for r in report["ratios"]}
    r = ratios["mtl (two_pass) step / (hf_cls + hf_mim) steps"]
    per_round = [
        m / (c + s)
        for m, c, s in zip(
            timings["mtl"]["times_s"], timings["hf_cls"]["times_s"], timings["hf_mim"]["times_s"], strict=True
        )
    ]
    assert r["value"] == pytest.approx(statistics.median(per_round)) and r["goal"] == 1.02
    assert r["met"] == (r["value"] <= 1.02)
    stl, ceiling = timings["stl"], timings["matmul_fp32"]
    expected_mfu = (stl["flops"] / stl["median_s"]) / (ceiling["flops"] / ceiling["median_s"])
    assert stl["mfu"] == pytest.approx(expected_mfu)
    assert timings["mtl_concat"]["description"].startswith("ours: classification + SimMIM; both views")
    assert set(report["optimizer"]["ms_per_step"]) == {"fused", "foreach", "loop"}
    for model in ("stl", "mtl", "mtl_mae"):
        p = report["precision"][model]
        assert 0 < p["logits_max_abs_diff"] < 0.1 and p["grad_cosine"] > 0.95


def test_bad_cases_and_suites_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--cases", "stl,mtl_fast", "--cpu"]) == 2
    assert "--cases: unknown case 'mtl_fast'" in capsys.readouterr().err
    assert main(["--suites", "speed,fun", "--cpu"]) == 2
    assert "--suites: unknown suite 'fun'" in capsys.readouterr().err


def test_a_new_step_mode_is_one_registered_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mode that trains gets training mode, forward+backward FLOPs and its own timings and name."""
    monkeypatch.setattr("benchmarks.harness.steps.STEP_MODES", dict(STEP_MODES))
    calls: list[bool] = []

    @step_mode("train_twice", trains=True)
    def twice(bench: Workbench, case: Case) -> Run:
        once = train_step(bench, case)

        def run() -> None:
            calls.append(bench.models[case.model].training)
            once()
            once()

        return run

    new = Case("stl", mode="train_twice")
    work = Workbench(TINY, 2, CPU, cases=[Case("stl"), new])
    timings, _ = speed_suite(work, [Case("stl"), new], rounds=2, warmup=0, clock="cpu")
    assert new.name == "stl_train_twice" and set(timings) == {"stl", "stl_train_twice"}
    assert len(timings["stl_train_twice"].times_s) == 2 and calls == [True, True]
    assert timings["stl_train_twice"].flops == timings["stl"].flops
    with pytest.raises(ValueError, match="unknown step mode 'fly'; known: train, infer"):
        work.case(Case("stl", mode="fly"))


def test_memory_ratios_by_hand() -> None:
    rows = {
        "stl_idle": {"peak_rss_mb": 500.0},
        "stl": {"peak_rss_mb": 1500.0},
        "mtl": {"peak_rss_mb": 2500.0},
        "stl_ckpt": {"peak_rss_mb": 1000.0},
        "mtl_ckpt": {"peak_rss_mb": 1200.0},
    }
    ratios = memory_ratios(rows, "peak_rss_mb")
    assert ratios["mtl / stl"] == {"peak": 2500 / 1500, "above_idle": 2000 / 1000}
    assert ratios["mtl_ckpt / stl"] == {"peak": 1200 / 1500, "above_idle": 700 / 1000}
    assert ratios["mtl_ckpt / stl_ckpt"] == {"peak": 1.2, "above_idle": 700 / 500}
    assert set(ratios) == {"mtl / stl", "stl_ckpt / stl", "mtl_ckpt / stl", "mtl_ckpt / stl_ckpt"}
    plain = memory_ratios(rows, "peak_rss_mb", above_idle=False)
    assert plain["mtl / stl"] == {"peak": 2500 / 1500, "above_idle": 2500 / 1500}


def test_tensor_and_heap_peaks_against_known_allocations() -> None:
    def step() -> None:
        block = torch.ones(256, 1024)  # 1 MiB alive at once, then freed
        block.sum()

    profiled = tensor_peak(step)
    assert profiled["peak_mb"] == pytest.approx(1.0, abs=1e-3)  # the float32 block (+ a 4-byte sum)
    assert sum(profiled["by_kind_mb"].values()) == pytest.approx(profiled["peak_mb"])
    start = heap_in_use_mb()
    assert start is not None  # glibc (Linux)
    with HeapPeak(interval=0.0005) as heap:
        block = torch.ones(64, 2**20)  # 256 MiB, touched, kept a moment
        block.add_(1)
        del block
    assert heap.peak_mb is not None and heap.peak_mb >= start + 256
    assert peak_rss_mb() >= 256  # this process's own high-water mark held the block


def test_memory_is_measured_in_fresh_processes(tiny_size: str) -> None:
    direct = memory_child(Case("stl"), tiny_size, 2, 1, True, tensors=True)
    assert direct["case"] == "stl" and direct["peak_rss_mb"] > direct["peak_heap_mb"] > 0
    assert direct["tensors"]["by_kind_mb"]["parameter"] > 0
    # the child process runs `python -m benchmarks.harness --memory-child` from the repository root
    summary = memory_suite([IDLE], "small", 1, 1, True, parallel=1)
    assert summary["metric"] == "peak_rss_mb" and set(summary["cases"]) == {"stl_idle"}
    assert summary["cases"]["stl_idle"]["peak_rss_mb"] > 0 and summary["ratios"] == {}


def test_overhead_differences_are_taken_from_the_medians() -> None:
    result = overhead_suite(TINY, 4, CPU, reps=3)
    us = result["microseconds"]
    assert set(us) == {
        *(f"{m} train forward" for m in ("hf_cls", "hf_mim", "stl", "mtl", "mtl_mae")),
        "hf_cls eval forward",
        "stl eval forward",
        "input check",
        "input check, one-pass sum",
    }
    assert all(v > 0 for v in us.values())
    assert result["stl - hf_cls, train forward"] == us["stl train forward"] - us["hf_cls train forward"]
    expected = us["mtl train forward"] - us["hf_cls train forward"] - us["hf_mim train forward"]
    assert result["mtl - (hf_cls + hf_mim), train forward"] == pytest.approx(expected)
