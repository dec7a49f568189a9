"""``export_onnx``: a trained model as an ONNX file that runs without PyTorch (onnxruntime and others).

An export folder holds:

* ``model.onnx``: the :class:`~mtl_hf.export.graph.InferenceGraph`, input ``pixel_values``
  ``(batch, C, H, W)`` float32 with a dynamic batch and the processor's fixed ``H x W``; one output
  ``logits.<task>`` per task, one output ``predictions.<task>`` ``(batch, K)`` per task whose head
  gives per-sample predictions (:meth:`~mtl_hf.heads.TaskHead.predictions`: a classifier's
  probabilities, a regression's values, a plugin head's own, computed inside the graph) and, with
  ``attentions=True``, ``attentions`` ``(batch, layers, heads, tokens, tokens)``;
* ``preprocessor_config.json``: the model's :class:`~mtl_hf.MTLImageProcessor`, which turns images into
  ``pixel_values`` (``AutoImageProcessor.from_pretrained(folder)`` after ``import mtl_hf``);
* ``onnx_outputs.json`` (:data:`OUTPUTS_FILE`): what each task's outputs are: its task, shape, the
  head's ``prediction_kind``, the name of its predictions output (``predictions``) and what they are
  (``prediction_key``: ``probabilities`` or ``values``, the head's
  :class:`~mtl_hf.heads.PredictionSpec`), the function that turns logits into probabilities for a
  consumer reading the logits (the head's :meth:`~mtl_hf.heads.TaskHead.probability_activation`:
  ``sigmoid`` for binary and multi-label tasks, ``softmax`` over the last axis for multi-class ones),
  and the output names (classes, labels, a regression's outputs); for the attentions, the number of
  prefix tokens, the patch grid and patch size.

The exporter is torch's TorchScript-based one (``torch.onnx.export(..., dynamo=False)``): it traces
the graph once and needs the ``onnx`` package (``pip install 'mtl-hf[onnx]'``). The
``torch.export``-based exporter (torch's default since 2.9) would also need ``onnxscript``, and its
tracing does not accept the model's input checks, whose branches depend on the data.
Those checks (channels, size, finite values) run while tracing and are not in the graph; the
position embeddings are traced for the processor's size, so the graph takes that size only.

The folder is written next to its final place and renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.onnx import _constants as onnx_constants  # the opsets the exporter writes

from ..errors import UsageError
from ..extras import import_extra
from ..image_processing_mtl import MTLImageProcessor
from ..inference.loading import load_model_and_processor
from ..inference.masks import mask_tasks
from ..inference.probabilities import prediction_spec, prediction_tasks
from ..modeling_mtl import MTLModel
from ..training.checkpointing import write_atomically
from .graph import InferenceGraph
from .layout import ATTENTIONS_NAME, DEFAULT_OPSET, FORMAT_VERSION, INPUT_NAME, MODEL_FILE, OUTPUTS_FILE


class ExportError(UsageError, ValueError):
    """The model cannot be exported as asked (an unknown task, an output folder that holds other files)."""


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote.

    Attributes:
        folder: The export folder.
        model_file: ``folder / "model.onnx"``.
        outputs: The contents of ``onnx_outputs.json``.
    """

    folder: Path
    model_file: Path
    outputs: dict[str, Any]


def logits_name(task: str) -> str:
    """The ONNX output name of task ``task``'s logits."""
    return f"logits.{task}"


def predictions_name(task: str) -> str:
    """The ONNX output name of task ``task``'s ``(batch, K)`` per-sample predictions."""
    return f"predictions.{task}"


def export_onnx(
    model: str | os.PathLike[str] | MTLModel,
    output_dir: str | os.PathLike[str],
    *,
    tasks: list[str] | None = None,
    attentions: bool = False,
    image_processor: MTLImageProcessor | None = None,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    **hub_kwargs: Any,
) -> OnnxExport:
    """Export ``model``'s inference graph to ``output_dir`` (see the module docstring).

    Args:
        model: A loaded :class:`~mtl_hf.MTLModel`, a ``save_pretrained`` folder, a training run folder
            (its ``best_model/``) or a Hub id.
        output_dir: The export folder; created, or replaced when it holds an earlier export.
        tasks: Clean-view tasks to export; default every task that gives per-sample predictions or
            segmentation masks.
        attentions: Also export every layer's attention maps.
        image_processor: Overrides the processor saved with the model.
        opset: ONNX opset version.
        overwrite: Replace ``output_dir`` even when it holds files other than an export.
        **hub_kwargs: ``revision``, ``cache_dir``, ``token``, ``local_files_only`` for loading.

    Raises:
        ExportError: an unknown or masked-view task, nothing to export, an ``output_dir`` holding other
            files, an opset the exporter does not write or one the graph's operators need a later
            version of; nothing is written then.
        mtl_hf.extras.MissingExtraError: the ``onnx`` package is not installed.
    """
    import_extra("onnx", feature="exporting to ONNX", extra="onnx")  # torch's exporter writes through it
    if not onnx_constants.ONNX_MIN_OPSET <= opset <= onnx_constants.ONNX_MAX_OPSET:
        raise ExportError(
            f"opset {opset}: torch's ONNX exporter writes opsets {onnx_constants.ONNX_MIN_OPSET} to "
            f"{onnx_constants.ONNX_MAX_OPSET} (default {DEFAULT_OPSET})"
        )
    out = Path(output_dir)
    if out.exists() and not overwrite:
        if not out.is_dir():
            raise ExportError(f"{out}: exists and is not a folder")
        if any(out.iterdir()) and not (out / OUTPUTS_FILE).exists():
            raise ExportError(f"{out}: folder holds other files; choose an empty folder or pass overwrite")
    net, processor = load_model_and_processor(model, image_processor, **hub_kwargs)
    chosen = list(tasks) if tasks is not None else prediction_tasks(net) + mask_tasks(net)
    predicting = [t for t in chosen if t in prediction_tasks(net)]
    try:
        graph = InferenceGraph(net, chosen, attentions=attentions, predicting=predicting)
    except ValueError as err:
        raise ExportError(str(err)) from None
    height, width = _processed_size(processor)
    channels = net.spec.num_channels
    description = describe_outputs(net, chosen, attentions, (channels, height, width), opset)
    names = [o["name"] for o in description["outputs"]]
    names += [o["predictions"] for o in description["outputs"] if o.get("predictions")]
    if attentions:
        names.append(ATTENTIONS_NAME)
    example = torch.randn(2, channels, height, width, dtype=torch.float32)

    def write(folder: Path) -> None:
        folder.mkdir(parents=True)
        was_training, device, dtype = net.training, net.device, net.dtype
        nn.Module.to(net, device="cpu", dtype=torch.float32)
        try:
            with warnings.catch_warnings(), _opset_errors(opset):
                # The tracer warns that the input checks become constants: they are meant to (module doc).
                warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
                warnings.simplefilter("ignore", category=DeprecationWarning)
                torch.onnx.export(
                    graph,
                    (example,),
                    str(folder / MODEL_FILE),
                    dynamo=False,
                    input_names=[INPUT_NAME],
                    output_names=names,
                    dynamic_axes={name: {0: "batch"} for name in [INPUT_NAME, *names]},
                    opset_version=opset,
                )
        finally:
            nn.Module.to(net, device=device, dtype=dtype)
            net.train(was_training)
        processor.save_pretrained(folder)
        (folder / OUTPUTS_FILE).write_text(json.dumps(description, indent=2) + "\n")

    write_atomically(out, write)
    return OnnxExport(folder=out, model_file=out / MODEL_FILE, outputs=description)


@contextmanager
def _opset_errors(opset: int) -> Iterator[None]:
    """An operator of the graph that ``opset`` cannot express becomes an :class:`ExportError` naming both."""
    try:
        yield
    except torch.onnx.errors.OnnxExporterError as err:
        raise ExportError(f"opset {opset}: {str(err).splitlines()[0]}") from None


def _example_logits(model: MTLModel, tasks: list[str], input_shape: tuple[int, int, int]) -> dict[str, Any]:
    """The logits of ``tasks`` for one blank image, for the output shapes the description records."""
    if not tasks:
        return {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            blank = torch.zeros(1, *input_shape, device=model.device, dtype=model.dtype)
            return dict(model(pixel_values=blank, tasks=tasks).logits)
    finally:
        model.train(was_training)


def describe_outputs(
    model: MTLModel,
    tasks: list[str],
    attentions: bool,
    input_shape: tuple[int, int, int],
    opset: int = DEFAULT_OPSET,
) -> dict[str, Any]:
    """The contents of ``onnx_outputs.json`` for an export of ``tasks`` (and the attentions)."""
    channels, height, width = input_shape
    outputs = []
    specs = {t: prediction_spec(model, t) for t in tasks}
    logits = _example_logits(model, [t for t, spec in specs.items() if spec is not None], input_shape)
    for task in tasks:
        head = model.head(task)
        spec = specs[task]
        entry: dict[str, Any] = {
            "name": logits_name(task),
            "task": task,
            "head": getattr(type(head), "registered_name", type(head).__name__),
            "prediction_kind": head.prediction_kind,
            "probabilities": head.probability_activation(),
            "segmentation": task in mask_tasks(model, [task]),
        }
        if spec is not None:
            entry |= {
                "predictions": predictions_name(task),
                "prediction_key": spec.key,
                "output_names": list(spec.outputs),
                "shape": ["batch", *logits[task].shape[1:]],
            }
        elif entry["segmentation"]:
            entry["shape"] = ["batch", height, width]
        outputs.append(entry)
    grid = (height // model.patch_size, width // model.patch_size)
    description: dict[str, Any] = {
        "format": "mtl-hf-onnx",
        "version": FORMAT_VERSION,
        "model_file": MODEL_FILE,
        "opset": opset,
        "exporter": f"torch.onnx TorchScript exporter (torch {torch.__version__.split('+')[0]})",
        "input": {"name": INPUT_NAME, "shape": ["batch", channels, height, width], "dtype": "float32"},
        "outputs": outputs,
        "attentions": None,
    }
    if attentions:
        backbone: Any = model.config.backbone_config
        tokens = model.num_prefix_tokens + grid[0] * grid[1]
        description["attentions"] = {
            "name": ATTENTIONS_NAME,
            "shape": ["batch", backbone.num_hidden_layers, backbone.num_attention_heads, tokens, tokens],
            "num_prefix_tokens": model.num_prefix_tokens,
            "grid_size": list(grid),
            "patch_size": model.patch_size,
        }
    return description


def _processed_size(processor: MTLImageProcessor) -> tuple[int, int]:
    if not processor.do_resize:
        raise ExportError("the image processor does not resize (do_resize=False); the graph needs one size")
    return int(processor.size["height"]), int(processor.size["width"])
