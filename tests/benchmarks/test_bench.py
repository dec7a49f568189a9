"""``mtl-hf bench``: the command answers, FLOP counts match hand formulas, ratios match their timings."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch

from mtl_hf.cli import main as cli_main
from mtl_hf.experiments import bench

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


def vit_forward_flops(d: int, mlp: int, layers: int, patches: int, channels: int, patch: int) -> int:
    """Multiply-adds x 2 of a ViT forward with a one-logit linear head on CLS."""
    t = patches + 1
    per_layer = 4 * 2 * t * d * d + 2 * 2 * t * t * d + 2 * 2 * t * d * mlp  # qkv+out, scores+mix, MLP
    return layers * per_layer + 2 * patches * channels * patch * patch * d + 2 * d


def test_bench_help_answers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["bench", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "mtl-hf bench" in text and "--quick" in text and "--threads" in text


def test_flop_counts_match_the_hand_formula() -> None:
    work = bench.Workbench(TINY, 4, torch.device("cpu"), names=["stl_infer", "stl", "hf_cls", "mtl_infer"])
    forward = vit_forward_flops(32, 64, 2, 16, 3, 8)
    patch_embedding = 2 * 16 * 3 * 8 * 8 * 32
    assert work.count_flops("stl_infer") == 4 * forward
    assert work.count_flops("mtl_infer") == 4 * forward  # eval: one clean pass, the MIM head idle
    # Backward doubles every matmul except the patch embedding's, whose input needs no gradient.
    assert work.count_flops("stl") == 4 * (3 * forward - patch_embedding)
    assert work.count_flops("hf_cls") == work.count_flops("stl")
    assert work.count_flops("stl_ckpt_bf16") == work.count_flops("stl")  # model FLOPs, no recompute


def test_paired_ratio_is_the_median_of_per_round_ratios() -> None:
    times = {"a": [2.0, 4.0, 3.0], "b": [1.0, 1.0, 2.0], "c": [1.0, 3.0, 1.0]}
    value, fastest = bench.paired_ratio(times, "a", ("b", "c"))
    assert value == statistics.median([2.0 / 2.0, 4.0 / 4.0, 3.0 / 3.0]) == 1.0
    assert fastest == pytest.approx(2.0 / (1.0 + 1.0))
    ratios = {r.name: r for r in bench.compute_ratios({"stl": [1.03, 1.0], "hf_cls": [1.0, 1.0]})}
    r = ratios["stl step / hf_cls step"]
    assert r.value == pytest.approx(1.015) and r.met is True
    ratios = {r.name: r for r in bench.compute_ratios({"stl_infer": [1.1, 1.1], "hf_cls_infer": [1.0, 1.0]})}
    r = ratios["stl infer img/s / hf_cls infer img/s"]
    assert r.value == pytest.approx(1 / 1.1) and r.higher_is_better and r.met is False


@pytest.mark.parametrize(
    ("name", "base"),
    [("mtl_concat", "mtl"), ("mtl_mae_ckpt", "mtl_mae"), ("hf_cls_infer_bf16", "hf_cls"), ("stl", "stl")],
)
def test_cases_run_on_their_base_model(name: str, base: str) -> None:
    assert bench.base_model(name) == base


def test_a_tiny_run_writes_consistent_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(bench.SIZES, "tiny", TINY)
    monkeypatch.setitem(bench.DEFAULT_BATCH, "tiny", 4)
    monkeypatch.setitem(bench.DEFAULT_MEMORY_BATCH, "tiny", 4)
    out = tmp_path / "bench.json"
    args = ["--size", "tiny", "--threads", "1", "--rounds", "3", "--warmup", "0", "--cpu"]
    assert bench.main([*args, "--suites", "speed,precision,optimizer", "--json", str(out)]) == 0
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
    stl, ceiling = timings["stl"], timings["matmul_fp32"]
    expected_mfu = (stl["flops"] / stl["median_s"]) / (ceiling["flops"] / ceiling["median_s"])
    assert stl["mfu"] == pytest.approx(expected_mfu)
    assert set(report["optimizer"]["ms_per_step"]) == {"fused", "foreach", "loop"}
    for model in ("stl", "mtl", "mtl_mae"):
        p = report["precision"][model]
        assert 0 < p["logits_max_abs_diff"] < 0.1 and p["grad_cosine"] > 0.95
