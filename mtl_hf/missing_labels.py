"""How a batch marks a sample that has no label for a task (partially labelled data).

Float labels (binary ``(B,)``, multi-label ``(B, L)``, continuous ``(B, K)``) carry NaN; integer class
indices (multi-class ``(B,)``) carry :data:`IGNORE_INDEX`. The data layer writes these markers for an
empty manifest cell, the model leaves such samples out of the task's loss
(:meth:`mtl_hf.heads.TaskHead.labelled`) and evaluation out of its metrics.
"""

from __future__ import annotations

IGNORE_INDEX = -100
"""The integer label of a sample without a label for its task (PyTorch's ``ignore_index`` default)."""

__all__ = ["IGNORE_INDEX"]
