"""Every shipped config validates: run configs, their data sections, compare configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtl_hf import MTLConfig
from mtl_hf.data import DataConfig
from mtl_hf.experiments.compare import CompareConfig, grid_cells, load_compare_config
from mtl_hf.experiments.demo import demo_compare_config, demo_run_config
from mtl_hf.options import OptionsError, from_dict
from mtl_hf.training.config import RunConfig, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["brats-vits16.yaml", "ultrasound-vits16.yaml"])
def test_run_configs_validate(name: str) -> None:
    config = load_config(CONFIGS / name)
    from_dict(DataConfig, config.data, "data")
    assert set(config.task_columns) <= set(config.model.tasks or {})
    assert config.model.backbone == "facebook/dino-vits16"


@pytest.mark.parametrize("dataset", ["brats", "ultrasound"])
def test_packaged_demo_configs_validate(dataset: str, tmp_path: Path) -> None:
    raw = demo_run_config(dataset, tmp_path)
    config = from_dict(RunConfig, raw)
    assert from_dict(DataConfig, config.data, "data").root == str(tmp_path / dataset)
    MTLConfig(backbone_config=config.model.backbone_config, tasks=config.model.tasks)


@pytest.mark.parametrize(
    ("name", "runs"), [("compare-brats.yaml", 3 * 2 * 4 * 3), ("compare-demo.yaml", 3 * 3 * 3)]
)
def test_compare_configs_validate(name: str, runs: int) -> None:
    config, base = load_compare_config(CONFIGS / name)
    assert len(grid_cells(config.grid)) == runs
    assert "model" in base and "data" in base


def test_compare_demo_config_is_the_demo(tmp_path: Path) -> None:
    """configs/compare-demo.yaml repeats the grid `mtl-hf demo` runs, on the same training config."""
    config, base = load_compare_config(CONFIGS / "compare-demo.yaml")
    packaged = from_dict(CompareConfig, demo_compare_config(tmp_path))
    assert config.grid == packaged.grid and config.bootstrap_resamples == packaged.bootstrap_resamples
    demo = demo_run_config("brats", tmp_path)
    assert {k: v for k, v in base.items() if k not in ("output_dir", "data")} == {
        k: v for k, v in demo.items() if k not in ("output_dir", "data")
    }


def test_folds_need_three(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="folds: 1 .no cross-validation. or at least 3, got 2"):
        from_dict(CompareConfig, {"output_dir": str(tmp_path), "grid": {"folds": 2}})
    cells = grid_cells(from_dict(CompareConfig, {"output_dir": "x", "grid": {"folds": 4}}).grid)
    assert len(cells) == 3 * 4
    assert [c.folder for c in cells[:4]] == [f"stl_all_f1_s0_k{j}" for j in range(4)]
