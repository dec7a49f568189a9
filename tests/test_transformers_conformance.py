"""transformers' own model tests (``ModelTesterMixin``, ``ConfigTester``) run against :class:`MTLModel`.

The mixins are transformers' (``tests/transformers_common/``, copied from its source distribution);
this file does what a model contributed to transformers does in ``tests/models/<name>/``: a model
tester that builds a tiny config and inputs, and one test class per backbone kind. Tests of the mixin
that do not apply to an image multi-task model are skipped below, each with its reason.
"""

from __future__ import annotations

import unittest
from typing import Any

import torch
from transformers.testing_utils import torch_device

from mtl_hf import MTLConfig, MTLModel
from mtl_hf.modeling_mtl import MTLModelOutput

from .transformers_common.test_configuration_common import ConfigTester
from .transformers_common.test_modeling_common import ModelTesterMixin, floats_tensor

TASKS = {
    "tumour": {"type": "binary_classification"},
    "grade": {"type": "multiclass_classification", "num_classes": 3},
    "mim": {"type": "mim", "mask_ratio": 0.5},
}


class MTLModelTester:
    """Tiny configs and inputs for the common tests (as transformers' ``ViTModelTester``)."""

    def __init__(
        self,
        parent: unittest.TestCase,
        backbone_type: str = "vit",
        batch_size: int = 3,
        image_size: int = 32,
        patch_size: int = 8,
        num_channels: int = 3,
        hidden_size: int = 32,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 4,
        intermediate_size: int = 37,
        is_training: bool = True,
    ) -> None:
        self.parent = parent
        self.backbone_type = backbone_type
        self.batch_size = batch_size
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.is_training = is_training
        # tokens: the CLS token and one per patch
        self.mask_length = (image_size // patch_size) ** 2
        self.seq_length = self.mask_length + 1
        # patches a given ``bool_masked_pos`` masks in the eager / SDPA comparison (as ViT's tester)
        self.num_masks = self.seq_length // 2

    def backbone_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "model_type": self.backbone_type,
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "num_channels": self.num_channels,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "initializer_range": 0.02,
        }
        if self.backbone_type == "vit":
            config["encoder_stride"] = self.patch_size
        return config

    def get_config(self) -> MTLConfig:
        return MTLConfig(
            backbone_config=self.backbone_config(),
            tasks=TASKS,
            weighting={"type": "fixed", "weights": {"mim": 0.5}},
        )

    def labels(self) -> dict[str, torch.Tensor]:
        """Labels of the supervised tasks (fixed, so that two calls give the same batch)."""
        rows = torch.arange(self.batch_size, device=torch_device)
        return {"tumour": rows % 2, "grade": rows % 3}

    def prepare_config_and_inputs_for_common(self) -> tuple[MTLConfig, dict[str, torch.Tensor]]:
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        return self.get_config(), {"pixel_values": pixel_values}


class _MTLModelTests(ModelTesterMixin):
    """The common tests with the skips an image multi-task model needs; subclasses choose the backbone."""

    backbone_type = "vit"
    all_model_classes = (MTLModel,)
    test_resize_embeddings = False
    test_torch_exportable = False
    has_attentions = True

    def setUp(self) -> None:
        self.model_tester = MTLModelTester(self, backbone_type=self.backbone_type)  # type: ignore[arg-type]
        self.config_tester = ConfigTester(
            self,
            config_class=MTLConfig,
            has_text_modality=False,
            tasks=TASKS,
            weighting={"type": "fixed", "weights": {"mim": 0.5}},
            view_layout="concat",
        )

    def test_config(self) -> None:
        self.config_tester.run_common_tests()

    def test_model(self) -> None:
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        model = MTLModel(config).to(torch_device).eval()
        with torch.no_grad():
            out = model(**inputs)
        b, t = self.model_tester.batch_size, self.model_tester.seq_length
        assert isinstance(out, MTLModelOutput)
        assert out.last_hidden_state.shape == (b, t, self.model_tester.hidden_size)
        assert out.logits["tumour"].shape == (b,) and out.logits["grade"].shape == (b, 3)
        # the heads read the backbone's output: logits are a function of the CLS token
        features = model.backbone(**inputs).last_hidden_state
        torch.testing.assert_close(out.last_hidden_state, features)

    def _prepare_for_class(
        self, inputs_dict: dict[str, Any], model_class: type, return_labels: bool = False
    ) -> dict[str, Any]:
        inputs = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if return_labels:  # every task gets a loss, so that every head gets gradients
            inputs["labels"] = self.model_tester.labels()
        return inputs

    def _prepare_config_and_inputs_for_retain_grad_hidden_states_attentions(
        self,
    ) -> tuple[MTLConfig, dict[str, Any]]:
        # The loss must depend on the clean view whose hidden states and attentions are returned: in
        # training mode without labels, only the masked view (MIM) has a loss.
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        return config, {**inputs, "labels": self.model_tester.labels()}

    def test_model_get_set_embeddings(self) -> None:
        # As transformers' ViT: the input embeddings are the patch embeddings, not an nn.Embedding.
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        model = MTLModel(config)
        self.assertIs(model.get_input_embeddings(), model.backbone.embeddings.patch_embeddings)
        self.assertIsNone(model.get_output_embeddings())

    @unittest.skip(reason="images only: no inputs_embeds (as transformers' ViT)")
    def test_inputs_embeds(self) -> None:
        pass


class MTLModelViTTest(_MTLModelTests, unittest.TestCase):
    backbone_type = "vit"


class MTLModelDinov2Test(_MTLModelTests, unittest.TestCase):
    backbone_type = "dinov2"
