"""MTLModel: the transformers contract, forward semantics, losses against hand computations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoModel, Dinov2Config, Dinov2Model, ViTConfig, ViTModel

import mtl_hf
from mtl_hf import MTLConfig, MTLModel
from tests.conftest import tiny_backbone, tiny_config

TWO_BINARY = {"tumour": {"type": "binary_classification"}, "oedema": {"type": "binary_classification"}}


def count_backbone_calls(model: MTLModel) -> list[int]:
    calls = [0]
    model.backbone.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


# -- the transformers face ------------------------------------------------------------------------
def test_auto_classes_round_trip_is_bit_identical(tmp_path: Path) -> None:
    model = MTLModel(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, MTLModel)
    x = torch.randn(3, 3, 64, 64)
    a, b = model(x), reloaded(x)
    assert torch.equal(a.logits["tumour"], b.logits["tumour"])
    assert torch.equal(a.last_hidden_state, b.last_hidden_state)
    mask = torch.zeros(3, 16, dtype=torch.bool)
    mask[:, :5] = True
    ra = model(x, bool_masked_pos=mask).reconstructions["mim"]
    rb = reloaded(x, bool_masked_pos=mask).reconstructions["mim"]
    assert torch.equal(ra, rb)
    assert list(reloaded.config.tasks) == list(model.config.tasks) == ["tumour", "mim"]
    assert list(reloaded.heads) == ["tumour", "mim"]
    saved = load_file(tmp_path / "model.safetensors")
    assert len(saved) == len(model.state_dict())  # every tensor stored (under transformers' checkpoint names)


def test_default_config_is_the_paper_setup() -> None:
    config = MTLConfig()
    bb = config.backbone_config
    assert (bb.model_type, bb.hidden_size, bb.num_hidden_layers, bb.num_attention_heads) == (
        "vit",
        384,
        12,
        6,
    )
    assert (bb.patch_size, bb.image_size, bb.intermediate_size) == (16, 224, 1536)
    assert {n: t["type"] for n, t in config.tasks.items()} == {
        "classification": "binary_classification",
        "mim": "mim",
    }
    mim = config.resolved_tasks["mim"]
    assert mim["mask_ratio"] == 0.6 and mim["mask_patch_size"] == 32 and mim["loss"] == "mse"
    assert config.weighting == {"type": "fixed"}
    assert config.resolved_weighting == {"type": "fixed", "weights": {}}


def test_config_stores_tasks_as_given_and_resolves_defaults() -> None:
    given = {"t": {"type": "binary_classification", "pos_weight": 3}}
    config = tiny_config(tasks=given, weighting={"type": "fixed", "weights": {"t": 2}})
    assert config.tasks == given and config.to_dict()["tasks"] == given
    assert config.weighting == {"type": "fixed", "weights": {"t": 2}}
    assert config.resolved_tasks == {
        "t": {"type": "binary_classification", "pooling": "cls", "dropout": 0.0, "pos_weight": 3.0}
    }
    assert config.resolved_weighting == {"type": "fixed", "weights": {"t": 2.0}}
    given["t"]["pos_weight"] = 5  # the config holds its own copy
    again = MTLConfig.from_dict(config.to_dict())
    assert again.tasks == config.tasks and again.weighting == config.weighting
    # the heads are built with the resolved options
    assert MTLModel(again).head("t").options.pos_weight == 3.0


@pytest.mark.parametrize("model_type", ["vit", "dinov2"])
def test_backbone_kinds_and_two_binary_tasks(model_type: str) -> None:
    patch = 16 if model_type == "vit" else 14
    size = 64 if model_type == "vit" else 56
    config = tiny_config(model_type, tasks=TWO_BINARY, backbone={"patch_size": patch, "image_size": size})
    model = MTLModel(config)
    x = torch.randn(2, 3, size, size)
    out = model(x, labels={"tumour": torch.tensor([0.0, 1.0]), "oedema": torch.tensor([1, 1])})
    assert set(out.task_losses) == {"tumour", "oedema"}
    assert out.logits["tumour"].shape == (2,) and out.logits["oedema"].shape == (2,)
    torch.testing.assert_close(out.loss, out.task_losses["tumour"] + out.task_losses["oedema"])


def test_backbone_config_accepts_a_config_object() -> None:
    config = MTLConfig(
        backbone_config=ViTConfig(**{k: v for k, v in tiny_backbone().items() if k != "model_type"})
    )
    assert MTLModel(config).backbone.config.hidden_size == 32


# -- from_backbone fidelity -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model_cls", "config"),
    [
        (ViTModel, ViTConfig(**{k: v for k, v in tiny_backbone().items() if k != "model_type"})),
        (
            Dinov2Model,
            Dinov2Config(
                **{
                    k: v
                    for k, v in tiny_backbone("dinov2", patch_size=14, image_size=56).items()
                    if k != "model_type"
                }
            ),
        ),
    ],
)
def test_from_backbone_keeps_every_tensor(tmp_path: Path, model_cls, config) -> None:
    torch.manual_seed(123)
    pretrained = model_cls(config)
    with torch.no_grad():  # make every tensor distinct from any fresh initialisation and from each other
        for p in pretrained.parameters():
            p.add_(torch.randn_like(p))
    pretrained.save_pretrained(tmp_path)
    saved = {
        k: v for k, v in load_file(tmp_path / "model.safetensors").items() if not k.startswith("pooler.")
    }
    model = MTLModel.from_backbone(
        str(tmp_path), tasks={"t": {"type": "binary_classification"}, "mim": {"type": "mim"}}
    )
    has_mask_token = any(k.endswith("mask_token") for k in saved)  # DINOv2 ships one; DINO v1 does not
    ours = {
        k: v for k, v in model.backbone.state_dict().items() if has_mask_token or not k.endswith("mask_token")
    }
    # The checkpoint names tensors in transformers' serialised layout, which may differ from module names:
    # match by value. Every saved tensor must appear, unchanged, exactly once among the backbone's tensors.
    assert len(saved) == len(ours)
    unmatched = dict(ours)
    for key, tensor in saved.items():
        hits = [k for k, v in unmatched.items() if v.shape == tensor.shape and torch.equal(v, tensor)]
        assert len(hits) == 1, key
        del unmatched[hits[0]]
    assert not unmatched
    # And transformers' own loader agrees with ours name by name.
    reference = model_cls.from_pretrained(tmp_path).state_dict()
    for key, tensor in ours.items():
        assert torch.equal(reference[key], tensor), key
    assert model.config.backbone_config._name_or_path == str(tmp_path)


# -- forward semantics --------------------------------------------------------------------------
def test_training_forward_runs_every_task_and_weights_them() -> None:
    model = MTLModel(tiny_config(weighting={"type": "fixed", "weights": {"mim": 0.25}}))
    out = model(torch.randn(4, 3, 64, 64), labels={"tumour": torch.tensor([0, 1, 1, 0])})
    assert set(out.task_losses) == {"tumour", "mim"}
    expected = out.task_losses["tumour"] * 1.0 + out.task_losses["mim"] * 0.25
    torch.testing.assert_close(out.loss, expected)
    assert out.task_weights == {"tumour": torch.tensor(1.0), "mim": torch.tensor(0.25)}
    assert out.reconstructions["mim"].shape == (4, 3, 64, 64)
    assert out.bool_masked_pos.shape == (4, 16) and out.bool_masked_pos.dtype == torch.bool


def test_inference_is_one_backbone_pass_with_every_classifier() -> None:
    tasks = {
        **TWO_BINARY,
        "grade": {"type": "multiclass_classification", "num_classes": 3},
        "mim": {"type": "mim"},
    }
    model = MTLModel(tiny_config(tasks=tasks)).eval()
    calls = count_backbone_calls(model)
    out = model(torch.randn(2, 3, 64, 64))
    assert calls[0] == 1
    assert set(out.logits) == {"tumour", "oedema", "grade"}
    assert out.loss is None and out.task_losses is None and out.reconstructions is None


def test_task_without_labels_is_skipped_and_tasks_argument_selects() -> None:
    model = MTLModel(tiny_config(tasks={**TWO_BINARY, "mim": {"type": "mim"}}))
    out = model(torch.randn(2, 3, 64, 64), labels={"tumour": torch.tensor([0, 1])})
    assert set(out.task_losses) == {"tumour", "mim"}
    assert "oedema" not in out.logits
    calls = count_backbone_calls(model)
    out = model(torch.randn(2, 3, 64, 64), labels={"tumour": torch.tensor([0, 1])}, tasks=["tumour"])  # STL
    assert set(out.task_losses) == {"tumour"} and calls[0] == 1
    out = model(torch.randn(2, 3, 64, 64), tasks=["mim"])  # pre-training phase
    assert set(out.task_losses) == {"mim"} and calls[0] == 2
    with pytest.raises(ValueError, match="no task named 'nope'"):
        model(torch.randn(2, 3, 64, 64), tasks=["nope"])
    with pytest.raises(ValueError, match="labels: no task named 'tumor'"):
        model(torch.randn(2, 3, 64, 64), labels={"tumor": torch.tensor([0, 1])})


def test_given_mask_is_used_and_hidden_states_are_the_clean_views() -> None:
    model = MTLModel(tiny_config()).eval()
    x = torch.randn(2, 3, 64, 64)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, [0, 5]] = True
    mask[1, 15] = True
    out = model(x, bool_masked_pos=mask, output_hidden_states=True, output_attentions=True)
    assert torch.equal(out.bool_masked_pos, mask)
    plain = model.backbone(pixel_values=x, output_hidden_states=True)
    torch.testing.assert_close(out.last_hidden_state, plain.last_hidden_state)
    assert len(out.hidden_states) == 3
    for ours, ref in zip(out.hidden_states, plain.hidden_states, strict=True):
        torch.testing.assert_close(ours, ref)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 2, 17, 17)
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(2, 2, 17))
    assert model.backbone.config._attn_implementation == "sdpa"  # switched back after the call


@pytest.mark.parametrize("layout", ["two_pass", "concat"])
def test_view_layouts_agree(layout: str) -> None:
    torch.manual_seed(1)
    ref = MTLModel(tiny_config())
    model = MTLModel(tiny_config(view_layout=layout))
    model.load_state_dict(ref.state_dict())
    x = torch.randn(3, 3, 64, 64)
    mask = torch.rand(3, 16) < 0.5
    labels = {"tumour": torch.tensor([1, 0, 1])}
    a = ref(x, labels=labels, bool_masked_pos=mask, output_hidden_states=True)
    b = model(x, labels=labels, bool_masked_pos=mask, output_hidden_states=True)
    for name in ("tumour", "mim"):
        torch.testing.assert_close(a.task_losses[name], b.task_losses[name], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.logits["tumour"], b.logits["tumour"], rtol=1e-5, atol=1e-6)
    for ha, hb in zip(a.hidden_states, b.hidden_states, strict=True):
        torch.testing.assert_close(ha, hb, rtol=1e-5, atol=1e-6)


def test_concat_layout_is_one_backbone_call() -> None:
    model = MTLModel(tiny_config(view_layout="concat"))
    calls = count_backbone_calls(model)
    model(torch.randn(2, 3, 64, 64), labels={"tumour": torch.tensor([0, 1])})
    assert calls[0] == 1


def test_eval_outputs_do_not_depend_on_batching() -> None:
    model = MTLModel(tiny_config()).eval()
    x = torch.randn(5, 3, 64, 64)
    whole = model(x).logits["tumour"]
    parts = torch.cat([model(x[:2]).logits["tumour"], model(x[2:]).logits["tumour"]])
    torch.testing.assert_close(whole, parts, rtol=1e-5, atol=1e-6)


def test_eager_and_sdpa_agree(tmp_path: Path) -> None:
    model = MTLModel(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    eager = MTLModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert eager.backbone.config._attn_implementation == "eager"
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(model(x).logits["tumour"], eager(x).logits["tumour"], rtol=1e-5, atol=1e-5)
    model.set_attn_implementation("eager")
    assert model.backbone.config._attn_implementation == "eager"


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(2)
    model = MTLModel(tiny_config())
    x = torch.randn(2, 3, 64, 64)
    mask = torch.rand(2, 16) < 0.5
    labels = {"tumour": torch.tensor([0, 1])}
    model(x, labels=labels, bool_masked_pos=mask).loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.activation_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.backbone.layers)
    model(x, labels=labels, bool_masked_pos=mask).loss.backward()
    for name, grad in plain.items():
        torch.testing.assert_close(model.get_parameter(name).grad, grad, rtol=1e-5, atol=1e-6)


def test_init_weights_covers_every_head_parameter() -> None:
    model = MTLModel(tiny_config(tasks={**TWO_BINARY, "mim": {"type": "mim"}}))
    for head in model.heads.values():
        for module in head.modules():
            module._is_hf_initialized = False
            for p in module.parameters(recurse=False):
                p._is_hf_initialized = False
                p.data.fill_(float("nan"))
    model.initialize_weights()
    for name, p in model.heads.named_parameters():
        assert torch.isfinite(p).all(), name
        if name.endswith("bias"):
            assert torch.equal(p, torch.zeros_like(p)), name
        else:
            assert 0 < p.std() < 0.05, name  # truncated normal with initializer_range 0.02


def test_gradients_reach_the_backbone_and_only_heads_that_ran() -> None:
    model = MTLModel(tiny_config(tasks={**TWO_BINARY, "mim": {"type": "mim"}}))
    out = model(torch.randn(2, 3, 64, 64), labels={"tumour": torch.tensor([0, 1])}, tasks=["tumour"])
    out.loss.backward()
    assert all(p.grad is not None for p in model.heads["tumour"].parameters())
    assert all(p.grad is None for p in model.heads["oedema"].parameters())
    assert all(p.grad is None for p in model.heads["mim"].parameters())
    assert model.backbone.layers[0].attention.q_proj.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    model(torch.randn(2, 3, 64, 64), tasks=["mim"]).loss.backward()
    assert model.backbone.embeddings.mask_token.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.heads["tumour"].parameters())


# -- losses against hand computations -----------------------------------------------------------
def test_binary_loss_matches_hand_computation_with_pos_weight() -> None:
    model = MTLModel(tiny_config(tasks={"t": {"type": "binary_classification", "pos_weight": 2.0}})).eval()
    x = torch.randn(3, 3, 64, 64)
    labels = torch.tensor([[1], [0], [1]])  # (B, 1) integers are accepted
    out = model(x, labels={"t": labels})
    z = out.logits["t"]
    y = torch.tensor([1.0, 0.0, 1.0])
    hand = -(2.0 * y * torch.log(torch.sigmoid(z)) + (1 - y) * torch.log(1 - torch.sigmoid(z))).mean()
    torch.testing.assert_close(out.task_losses["t"], hand)


def test_multiclass_and_multilabel_losses_match_hand_computation() -> None:
    tasks = {
        "grade": {"type": "multiclass_classification", "num_classes": 3, "label_smoothing": 0.1},
        "pathology": {"type": "multilabel_classification", "num_labels": 3},
    }
    model = MTLModel(tiny_config(tasks=tasks)).eval()
    grade = torch.tensor([2, 0])
    patho = torch.tensor([[1, 0, 1], [0, 0, 0]])
    out = model(torch.randn(2, 3, 64, 64), labels={"grade": grade, "pathology": patho})
    z = out.logits["grade"]
    target = torch.full((2, 3), 0.1 / 3)
    target[torch.arange(2), grade] += 0.9
    hand_ce = -(target * torch.log_softmax(z, dim=-1)).sum(-1).mean()
    torch.testing.assert_close(out.task_losses["grade"], hand_ce)
    p = torch.sigmoid(out.logits["pathology"])
    y = patho.float()
    hand_bce = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    torch.testing.assert_close(out.task_losses["pathology"], hand_bce)


@pytest.mark.parametrize("kind", ["mse", "l1"])
def test_mim_loss_counts_masked_pixels_only(kind: str) -> None:
    model = MTLModel(tiny_config(tasks={"mim": {"type": "mim", "loss": kind}}))
    x = torch.randn(2, 3, 64, 64)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, 0] = True  # top-left patch of image 0
    mask[1, 5] = mask[1, 6] = True  # patches (1,1) and (1,2) of image 1
    out = model(x, bool_masked_pos=mask)
    r = out.reconstructions["mim"]
    err = (r - x) ** 2 if kind == "mse" else (r - x).abs()
    masked = torch.cat(
        [
            err[0, :, 0:16, 0:16].flatten(),
            err[1, :, 16:32, 16:32].flatten(),
            err[1, :, 16:32, 32:48].flatten(),
        ]
    )
    torch.testing.assert_close(out.task_losses["mim"], masked.mean())
    # changing unmasked pixels' reconstruction error does not change the loss: gradient is zero there
    out.task_losses["mim"].backward()
    assert model.heads["mim"].decoder[0].weight.grad is not None


def test_mim_all_visible_mask_gives_zero_loss() -> None:
    model = MTLModel(tiny_config(tasks={"mim": {"type": "mim"}}))
    out = model(torch.randn(2, 3, 64, 64), bool_masked_pos=torch.zeros(2, 16, dtype=torch.bool))
    assert out.task_losses["mim"].item() == 0.0
    assert torch.isfinite(out.loss)


def test_mim_norm_target_and_single_channel_reconstruction() -> None:
    config = tiny_config(tasks={"mim": {"type": "mim", "norm_target": True}}, backbone={"num_channels": 1})
    model = MTLModel(config)
    x = torch.randn(1, 1, 64, 64)
    mask = torch.zeros(1, 16, dtype=torch.bool)
    mask[0, 3] = True
    out = model(x, bool_masked_pos=mask)
    r = out.reconstructions["mim"]
    assert r.shape == (1, 1, 64, 64)
    patch = x[0, 0, 0:16, 48:64]
    target = (patch - patch.mean()) / (patch.var(unbiased=False) + 1e-6).sqrt()
    torch.testing.assert_close(out.task_losses["mim"], ((r[0, 0, 0:16, 48:64] - target) ** 2).mean())


def test_model_draws_masks_at_the_configured_ratio() -> None:
    model = MTLModel(tiny_config(tasks={"mim": {"type": "mim", "mask_patch_size": 16, "mask_ratio": 0.25}}))
    out = model(torch.randn(3, 3, 64, 64))
    assert out.bool_masked_pos.sum(dim=1).tolist() == [4, 4, 4]  # 16 patches, scale 1, round(0.25 * 16)


# -- bad input ------------------------------------------------------------------------------------
def test_bad_pixel_values_are_named() -> None:
    model = MTLModel(tiny_config())
    with pytest.raises(ValueError, match="1 channel.*expects 3"):
        model(torch.randn(2, 1, 64, 64))
    with pytest.raises(ValueError, match="60x64 is not a positive multiple of the patch size 16"):
        model(torch.randn(2, 3, 60, 64))
    bad = torch.randn(2, 3, 64, 64)
    bad[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        model(bad)
    with pytest.raises(ValueError, match=r"shape \(B, C, H, W\)"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match=r"bool_masked_pos must have shape \(2, 16\)"):
        model(torch.randn(2, 3, 64, 64), bool_masked_pos=torch.zeros(2, 15, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool tensor"):
        model(torch.randn(2, 3, 64, 64), bool_masked_pos=torch.zeros(2, 16))


def test_bad_labels_are_named() -> None:
    tasks = {
        "tumour": {"type": "binary_classification"},
        "grade": {"type": "multiclass_classification", "num_classes": 3},
        "patho": {"type": "multilabel_classification", "num_labels": 2},
    }
    model = MTLModel(tiny_config(tasks=tasks))
    x = torch.randn(2, 3, 64, 64)
    cases = [
        ({"tumour": torch.tensor([0, 2])}, "'tumour'.*must be 0 or 1.*found 2"),
        ({"tumour": torch.tensor([[0, 1], [1, 0]])}, r"'tumour'.*shape \(B,\) or \(B, 1\)"),
        ({"tumour": torch.tensor([0.0, 1.0, 1.0])}, "'tumour'.*batch size 3"),
        ({"tumour": torch.tensor([float("inf"), 1.0])}, "'tumour'.*inf"),
        ({"tumour": torch.tensor([float("nan"), 0.5])}, "'tumour'.*must be 0 or 1.*found 0.5"),
        ({"grade": torch.tensor([-100, -1])}, r"'grade'.*class index -1 outside"),
        ({"patho": torch.tensor([[float("nan"), 2.0], [0.0, 1.0]])}, "'patho'.*found 2"),
        ({"grade": torch.tensor([0.0, 1.0])}, "'grade'.*integer class indices"),
        ({"grade": torch.tensor([0, 3])}, r"'grade'.*class index 3 outside \[0, 3\)"),
        ({"patho": torch.tensor([1, 0])}, r"'patho'.*shape \(B, 2\)"),
    ]
    for labels, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            model(x, labels=labels)


def test_bad_task_configs_are_named() -> None:
    cases = [
        ({"t": {"type": "binary_classification", "poolng": "cls"}}, "tasks.t.poolng: unknown key"),
        ({"t": {"type": "binary_classification", "pooling": "max"}}, "tasks.t.pooling: must be one of"),
        ({"t": {"type": "mim", "mask_ratio": "high"}}, "tasks.t.mask_ratio: expected a number"),
        ({"t": {"type": "mim", "mask_ratio": 1.5}}, r"mask_ratio must be in \(0, 1\]"),
        ({"t": {"type": "multiclass_classification"}}, "tasks.t.num_classes: required key is missing"),
        ({"t": {"type": "binary_classification", "dropout": True}}, "tasks.t.dropout: expected a number"),
        ({"t": {"pooling": "cls"}}, "tasks.t: expected a mapping with a 'type' key"),
        (
            {"t": {"type": "segmentaton"}},
            "tasks.t.type: unknown head 'segmentaton'. Available: binary_classification",
        ),
        ({"bad name": {"type": "mim"}}, "must be a Python identifier"),
    ]
    for tasks, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            tiny_config(tasks=tasks)


def test_fixed_weights_validation() -> None:
    with pytest.raises(ValueError, match="weighting.weights.tumor: no task named 'tumor'"):
        tiny_config(weighting={"type": "fixed", "weights": {"tumor": 1.0}})
    with pytest.raises(ValueError, match="weighting.weights.mim: must be a finite number >= 0"):
        tiny_config(weighting={"type": "fixed", "weights": {"mim": -1.0}})
    with pytest.raises(ValueError, match="unknown weighter 'magic'. Available: .*fixed"):
        tiny_config(weighting={"type": "magic"})
    with pytest.raises(ValueError, match="backbone_config: model_type 'bert' is not supported"):
        MTLConfig(backbone_config={"model_type": "bert"})


def test_in_process_head_registration_trains_saves_and_reloads(tmp_path: Path) -> None:
    from dataclasses import dataclass

    from mtl_hf.heads import HEADS, BackboneFeatures, HeadOptions, HeadOutput, TaskHead

    @dataclass
    class MeanIntensityOptions(HeadOptions):
        scale: float = 1.0

    @HEADS.register("test_mean_intensity")
    class MeanIntensityHead(TaskHead):
        """Regresses the mean pixel value (a toy self-supervised head)."""

        Options = MeanIntensityOptions
        requires_labels = False

        def __init__(self, task_name, options, backbone):
            super().__init__(task_name, options, backbone)
            self.proj = torch.nn.Linear(backbone.hidden_size, 1)

        def forward(self, features: BackboneFeatures, labels=None) -> HeadOutput:
            pred = self.proj(features.cls_token)[:, 0]
            target = features.pixel_values.mean(dim=(1, 2, 3)) * self.options.scale
            return HeadOutput(loss=F.mse_loss(pred, target), logits=pred)

    assert "test_mean_intensity" in HEADS.names("test_*")
    model = MTLModel(tiny_config(tasks={"intensity": {"type": "test_mean_intensity", "scale": 2.0}}))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = model(torch.randn(2, 3, 64, 64))
    out.loss.backward()
    opt.step()
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path)
    assert reloaded.config.tasks["intensity"] == {"type": "test_mean_intensity", "scale": 2.0}
    torch.testing.assert_close(reloaded.heads["intensity"].proj.weight, model.heads["intensity"].proj.weight)


def test_init_parameters_of_a_head_without_parameters_of_its_own_runs_and_spares_loaded_weights(
    tmp_path: Path,
) -> None:
    """transformers skips parameter-less modules of models defined outside it; a head's hook must run."""
    from transformers import initialization as init

    from mtl_hf.heads import HEADS, BackboneFeatures, HeadOutput, TaskHead

    @HEADS.register("test_own_init")
    class OwnInitHead(TaskHead):
        requires_labels = False

        def __init__(self, task_name, options, backbone):
            super().__init__(task_name, options, backbone)
            self.proj = torch.nn.Sequential(torch.nn.Linear(backbone.hidden_size, 1))

        def init_parameters(self) -> None:
            init.constant_(self.proj[0].bias, 0.5)

        def forward(self, features: BackboneFeatures, labels=None) -> HeadOutput:
            pred = self.proj(features.cls_token)[:, 0]
            return HeadOutput(loss=pred.pow(2).mean(), logits=pred)

    model = MTLModel(tiny_config(tasks={"own": {"type": "test_own_init"}}))
    assert model.heads["own"].proj[0].bias.item() == 0.5  # the hook ran after the generic zero bias
    torch.optim.SGD(model.parameters(), lr=0.1).zero_grad()
    model(torch.randn(2, 3, 64, 64)).loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    trained = model.heads["own"].proj[0].bias.item()
    assert trained != 0.5
    model.save_pretrained(tmp_path)
    assert AutoModel.from_pretrained(tmp_path).heads["own"].proj[0].bias.item() == trained


def test_package_registers_auto_classes() -> None:
    from transformers import AutoConfig

    config = AutoConfig.for_model("mtl_vit")
    assert isinstance(config, mtl_hf.MTLConfig)
