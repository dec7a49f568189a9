"""Sharing on the Hugging Face Hub: model cards and pushing models or training runs.

* :func:`push_to_hub`: upload a ``save_pretrained`` folder or a training run folder (its best model,
  plots and results) with a generated model card, in one commit.
* :func:`render_model_card`: the card alone (``str(card)`` is the README), to review before pushing.
"""

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        ".folders": ("HubFolderError", "ShareableFolder", "UploadFile", "resolve_shareable"),
        ".model_card": ("ModelCardOptions", "build_card_data", "render_model_card"),
        ".push": ("HubPushError", "PushResult", "push_to_hub"),
    },
)

if TYPE_CHECKING:
    from .folders import HubFolderError, ShareableFolder, UploadFile, resolve_shareable
    from .model_card import ModelCardOptions, build_card_data, render_model_card
    from .push import HubPushError, PushResult, push_to_hub

__all__ = [
    "HubFolderError",
    "HubPushError",
    "ModelCardOptions",
    "PushResult",
    "ShareableFolder",
    "UploadFile",
    "build_card_data",
    "push_to_hub",
    "render_model_card",
    "resolve_shareable",
]
