"""A web page on a trained model (``mtl-hf app MODEL``), and the same page as a Hugging Face Space.

:class:`Analyzer` (no web framework) computes what the page shows; :func:`build_app` / :func:`launch`
(:mod:`mtl_hf.app.ui`) make the Gradio page, imported only when called (``pip install 'mtl-hf[app]'``);
:func:`space_files` (:mod:`mtl_hf.app.space`) writes the Space's ``app.py``, requirements and card.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        ".analysis": ("Analysis", "Analyzer"),
        ".space": ("space_files",),
    },
)

if TYPE_CHECKING:
    from .analysis import Analysis, Analyzer
    from .space import space_files


def build_app(analyzer: Analyzer, **kwargs: Any) -> Any:
    """See :func:`mtl_hf.app.ui.build_app`."""
    from .ui import build_app as build

    return build(analyzer, **kwargs)


def launch(model: Any, **kwargs: Any) -> Any:
    """See :func:`mtl_hf.app.ui.launch`."""
    from .ui import launch as serve

    return serve(model, **kwargs)


__all__ = ["Analysis", "Analyzer", "build_app", "launch", "space_files"]
