"""Explainability: attention maps (last layer per head and mean, rollout), MIM reconstructions,
figures, and how well attention localizes lesions (:func:`attention_localization`)."""

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        ".attention": (
            "AttentionMaps",
            "attention_maps",
            "cls_attention",
            "mass_threshold",
            "normalize_map",
            "upsample_map",
        ),
        ".bootstrap": ("MeanWithCI", "bootstrap_mean"),
        ".errors": ("ExplainError",),
        ".explanation": ("ExplainResult", "explain", "named_models"),
        ".figures": ("overlay", "save_attention_figure", "save_comparison_grid", "save_mim_figure", "to_rgb"),
        ".localization": (
            "METRICS",
            "LocalizationRow",
            "LocalizationScores",
            "attention_in_lesion",
            "attention_localization",
            "collect_localization_scores",
            "lesion_fraction",
            "localization_markdown",
            "pixel_roc_auc",
            "pointing_game",
            "summarize_localization",
            "write_localization_table",
        ),
        ".reconstruction": ("Reconstruction", "mim_task_of", "reconstruct", "shared_mask"),
        ".rollout": ("attention_rollout", "fuse_heads"),
        ".run_data": ("find_run_config", "split_loader"),
    },
)

if TYPE_CHECKING:
    from .attention import (
        AttentionMaps,
        attention_maps,
        cls_attention,
        mass_threshold,
        normalize_map,
        upsample_map,
    )
    from .bootstrap import MeanWithCI, bootstrap_mean
    from .errors import ExplainError
    from .explanation import ExplainResult, explain, named_models
    from .figures import overlay, save_attention_figure, save_comparison_grid, save_mim_figure, to_rgb
    from .localization import (
        METRICS,
        LocalizationRow,
        LocalizationScores,
        attention_in_lesion,
        attention_localization,
        collect_localization_scores,
        lesion_fraction,
        localization_markdown,
        pixel_roc_auc,
        pointing_game,
        summarize_localization,
        write_localization_table,
    )
    from .reconstruction import Reconstruction, mim_task_of, reconstruct, shared_mask
    from .rollout import attention_rollout, fuse_heads
    from .run_data import find_run_config, split_loader

__all__ = [
    "METRICS",
    "AttentionMaps",
    "ExplainError",
    "ExplainResult",
    "LocalizationRow",
    "LocalizationScores",
    "MeanWithCI",
    "Reconstruction",
    "attention_in_lesion",
    "attention_localization",
    "attention_maps",
    "attention_rollout",
    "bootstrap_mean",
    "cls_attention",
    "collect_localization_scores",
    "explain",
    "find_run_config",
    "fuse_heads",
    "lesion_fraction",
    "localization_markdown",
    "mass_threshold",
    "mim_task_of",
    "named_models",
    "normalize_map",
    "overlay",
    "pixel_roc_auc",
    "pointing_game",
    "reconstruct",
    "save_attention_figure",
    "save_comparison_grid",
    "save_mim_figure",
    "shared_mask",
    "split_loader",
    "summarize_localization",
    "to_rgb",
    "upsample_map",
    "write_localization_table",
]
