"""``import mtl_hf`` is cheap and still registers the Auto classes, whatever the import order."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SAVE_AND_RELOAD = """
import tempfile
from transformers import AutoConfig, AutoImageProcessor, AutoModel, pipeline
config = AutoConfig.for_model(
    "mtl_vit",
    backbone_config={"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "intermediate_size": 64, "image_size": 32, "patch_size": 16, "encoder_stride": 16},
    tasks={"t": {"type": "binary_classification"}},
)
model = AutoModel.from_config(config)
folder = tempfile.mkdtemp()
model.save_pretrained(folder)
import mtl_hf
mtl_hf.MTLImageProcessor.for_backbone(config.backbone_config).save_pretrained(folder)
assert type(AutoModel.from_pretrained(folder)).__name__ == "MTLModel"
assert type(AutoImageProcessor.from_pretrained(folder)).__name__ == "MTLImageProcessor"
assert type(pipeline("mtl-image-classification", model=folder)).__name__ == "MTLImageClassificationPipeline"
print("ok")
"""


def run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_import_loads_neither_torch_nor_transformers() -> None:
    out = run(
        """
        import sys
        import mtl_hf, mtl_hf.cli, mtl_hf.errors
        print(sorted(m for m in ("torch", "transformers", "numpy") if m in sys.modules))
        print(sorted(n for n in mtl_hf.__all__ if n in vars(mtl_hf)))
        """
    )
    assert out.splitlines() == ["[]", "['__version__']"]


@pytest.mark.parametrize(
    "first",
    [
        "import mtl_hf",  # transformers loads its Auto classes after mtl_hf
        "import transformers.models.auto.modeling_auto, transformers.pipelines; import mtl_hf",  # before
        "import mtl_hf; from transformers import ViTModel",  # AutoModel loaded from inside ViT's import
        "from mtl_hf import MTLModel",  # our model module loads transformers itself
    ],
)
def test_auto_classes_and_pipeline_resolve_in_any_import_order(first: str) -> None:
    assert run(first + "\n" + SAVE_AND_RELOAD).strip().endswith("ok")


def test_public_names_load_on_first_use() -> None:
    import mtl_hf
    from mtl_hf.configuration_mtl import MTLConfig
    from mtl_hf.heads import HEADS
    from mtl_hf.modeling_mtl import MTLModel

    assert mtl_hf.MTLConfig is MTLConfig and mtl_hf.MTLModel is MTLModel and mtl_hf.HEADS is HEADS
    assert set(mtl_hf.__all__) <= set(dir(mtl_hf))
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        _ = mtl_hf.NoSuchThing  # type: ignore[attr-defined]
