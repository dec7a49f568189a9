"""The Gradio page over :class:`~mtl_hf.app.analysis.Analyzer` (``pip install 'mtl-hf[app]'``).

One upload box (PNG, JPEG, BMP, TIFF, DICOM, NIfTI), a slice slider and index box for volumes and
cine loops, and
the analysis: each task's predictions (the exact values as JSON, and class probabilities as a bar
chart), the attention overlay, the MIM panel and the segmentation masks. Two API endpoints, usable with ``gradio_client``:

* ``/analyze`` ``(file, slice)``: the outputs for slice ``slice`` (``None``: the peak slice of a
  volume; ignored for a 2-D image);
* ``/load`` ``(file)``: the same for the default slice, with the slider and index box set to the
  file's slices (what the page runs on upload).

Outputs, in order: predictions (JSON, ``{task: value | {output: value}}`` over every task, the values
of ``predictions.json``), probabilities (bars, one per output of the tasks whose predictions are class
probabilities: ``task`` or ``task/<class>``), attention overlay, MIM panel, masks (a gallery), a
Markdown line naming the file, slice and volume-level predictions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import MtlHfError
from ..extras import import_extra
from ..inference.readers import SUPPORTED_SUFFIXES
from .analysis import Analysis, Analyzer

TITLE = "mtl-hf"
DISCLAIMER = "A research model, not a medical device: do not use it for diagnosis."


def import_gradio() -> Any:
    """``gradio``, or a :class:`~mtl_hf.extras.MissingExtraError` that says how to install it."""
    return import_extra("gradio", feature="the web app", extra="app")


def build_app(analyzer: Analyzer, *, title: str = TITLE) -> Any:
    """The ``gradio.Blocks`` page for ``analyzer`` (not launched)."""
    gr = import_gradio()
    tasks = ", ".join(analyzer.task_names)
    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f"# {title}\nTasks: {tasks}. {DISCLAIMER}")
        with gr.Row():
            with gr.Column():
                upload = gr.File(
                    label="Image or volume (PNG, JPEG, DICOM, NIfTI)",
                    type="filepath",
                    file_types=[*SUPPORTED_SUFFIXES, ".gz"],
                )
                slider = gr.Slider(0, 1, value=0, step=1, label="Slice / frame", visible=False)
                index = gr.Number(
                    label="Slice / frame (empty: the highest-scoring one)",
                    precision=0,
                    value=None,
                    visible=False,
                )
                button = gr.Button("Analyse", variant="primary")
                info = gr.Markdown()
            with gr.Column():
                bars = gr.Label(label="Probabilities", num_top_classes=20)
                values = gr.JSON(label="Predictions (exact)")
        with gr.Row():
            attention = gr.Image(label="Attention (last layer, mean over heads)", type="numpy")
            reconstruction = gr.Image(label="MIM: masked input | reconstruction | composite", type="numpy")
            masks = gr.Gallery(label="Segmentation masks", columns=2)
        outputs = [values, bars, attention, reconstruction, masks, info]

        def analyze(path: str | None, index: float | None) -> tuple[Any, ...]:
            if not path:
                raise gr.Error("upload a file first")
            try:
                result = analyzer.analyze(path, None if index is None else int(index))
            except (MtlHfError, OSError) as err:  # ours (an unreadable file, no such slice) or a path's
                raise gr.Error(str(err)) from None
            return _outputs(result)

        def load(path: str | None) -> tuple[Any, ...]:
            shown = analyze(path, None)
            result_indices, chosen = shown[-1]
            if result_indices:
                low, high = result_indices[0], result_indices[-1]
                return (
                    *shown[:-1],
                    gr.update(visible=True, minimum=low, maximum=high, value=chosen),
                    gr.update(visible=True, value=chosen),
                )
            return (*shown[:-1], gr.update(visible=False, value=0), gr.update(visible=False, value=None))

        def analyze_shown(path: str | None, index: float | None) -> tuple[Any, ...]:
            return analyze(path, index)[:-1]

        upload.upload(load, [upload], [*outputs, slider, index], api_name="load")
        button.click(analyze_shown, [upload, index], outputs, api_name="analyze")
        slider.release(
            lambda path, i: (*analyze_shown(path, i), i), [upload, slider], [*outputs, index], api_name=False
        )
    return app


def _outputs(result: Analysis) -> tuple[Any, ...]:
    bars: dict[str, float] = {}
    for task, value in result.probabilities.items():
        if isinstance(value, dict):
            bars |= {f"{task}/{name}": float(v) for name, v in value.items()}
        else:
            bars[task] = float(value)
    where = Path(result.source).name + ("" if result.index is None else f", slice {result.index}")
    info = f"**{where}**"
    if result.volume is not None:
        info += f"; volume-level predictions: `{Analysis.by_task(result.volume)}`"
    gallery = [(image, task) for task, image in result.masks.items()] or None
    return (
        Analysis.by_task(result.predictions),
        bars,
        result.attention,
        result.reconstruction,
        gallery,
        info,
        (result.indices, result.index),
    )


def launch(
    model: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    block: bool = True,
    **hub_kwargs: Any,
) -> Any:
    """Load ``model``, build the page and serve it on ``host:port`` (``port=None``: Gradio's choice).
    With ``block=False`` return the running app at once (``app.close()`` stops it)."""
    app = build_app(Analyzer(model, **hub_kwargs), title=f"{TITLE}: {Path(str(model)).name}")
    app.launch(
        server_name=host, server_port=port, share=share, prevent_thread_lock=not block, quiet=not block
    )
    return app
