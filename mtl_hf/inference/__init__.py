"""Inference: class probabilities, values and segmentation masks for images and volumes (:func:`predict`),
and the ``"mtl-image-classification"`` transformers pipeline (registered when transformers loads its
pipelines, see :mod:`mtl_hf.auto_registration`).

The public names are imported on first use (:mod:`mtl_hf.lazy_exports`), so ``mtl-hf predict --help``
loads no torch."""

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "..data.readers": ("canonical_geometry",),
        "..heads.volume_rules": ("VOLUME_RULES", "aggregate_slices"),
        ".choices": ("AGGREGATIONS",),
        ".errors": ("ModelNotFoundError", "NotAnMtlModelError", "PredictionError"),
        ".loading": ("load_model_and_processor", "model_display_name", "resolve_model_path"),
        ".masks": ("MaskWriter", "mask_tasks"),
        ".outputs": ("UnsafeOutputError",),
        ".pipeline": ("TASK as PIPELINE_TASK", "MTLImageClassificationPipeline", "register_pipeline"),
        ".prediction": (
            "ImagePrediction",
            "InputError",
            "PredictionResult",
            "VolumePrediction",
            "predict",
            "tasks_to_predict",
            "volume_predictions",
        ),
        ".probabilities": (
            "classification_tasks",
            "column_names",
            "output_names",
            "prediction_spec",
            "prediction_tasks",
            "task_predictions",
        ),
        ".readers": (
            "InputImage",
            "expand_inputs",
            "find_inputs",
            "read_dicom",
            "read_file",
            "read_image",
            "read_inputs",
            "read_nifti_slices",
        ),
    },
)

if TYPE_CHECKING:
    from ..data.readers import canonical_geometry
    from ..heads.volume_rules import VOLUME_RULES, aggregate_slices
    from .choices import AGGREGATIONS
    from .errors import ModelNotFoundError, NotAnMtlModelError, PredictionError
    from .loading import load_model_and_processor, model_display_name, resolve_model_path
    from .masks import MaskWriter, mask_tasks
    from .outputs import UnsafeOutputError
    from .pipeline import TASK as PIPELINE_TASK
    from .pipeline import MTLImageClassificationPipeline, register_pipeline
    from .prediction import (
        ImagePrediction,
        InputError,
        PredictionResult,
        VolumePrediction,
        predict,
        tasks_to_predict,
        volume_predictions,
    )
    from .probabilities import (
        classification_tasks,
        column_names,
        output_names,
        prediction_spec,
        prediction_tasks,
        task_predictions,
    )
    from .readers import (
        InputImage,
        expand_inputs,
        find_inputs,
        read_dicom,
        read_file,
        read_image,
        read_inputs,
        read_nifti_slices,
    )

__all__ = [
    "AGGREGATIONS",
    "PIPELINE_TASK",
    "VOLUME_RULES",
    "ImagePrediction",
    "InputError",
    "InputImage",
    "MTLImageClassificationPipeline",
    "MaskWriter",
    "ModelNotFoundError",
    "NotAnMtlModelError",
    "PredictionError",
    "PredictionResult",
    "UnsafeOutputError",
    "VolumePrediction",
    "aggregate_slices",
    "canonical_geometry",
    "classification_tasks",
    "column_names",
    "expand_inputs",
    "find_inputs",
    "load_model_and_processor",
    "mask_tasks",
    "model_display_name",
    "output_names",
    "predict",
    "prediction_spec",
    "prediction_tasks",
    "read_dicom",
    "read_file",
    "read_image",
    "read_inputs",
    "read_nifti_slices",
    "register_pipeline",
    "resolve_model_path",
    "task_predictions",
    "tasks_to_predict",
    "volume_predictions",
]
