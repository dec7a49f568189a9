"""The file suffixes each reader takes, without importing the readers (``mtl-hf predict --help`` lists
them and loads neither numpy nor an image library)."""

from __future__ import annotations

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
"""Read by Pillow (:mod:`.pictures`)."""

DICOM_SUFFIXES = (".dcm", ".dicom")
"""Read by pydicom (:mod:`.dicom`); a file without suffix is DICOM when it has the DICOM preamble."""

NIFTI_SUFFIXES = (".nii.gz", ".nii")
"""Read by nibabel (:mod:`.nifti`)."""

READABLE_SUFFIXES = IMAGE_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES
"""Every suffix a reader takes."""

__all__ = ["DICOM_SUFFIXES", "IMAGE_SUFFIXES", "NIFTI_SUFFIXES", "READABLE_SUFFIXES"]
