"""One reader per file format, each with its guards, used by training, ``predict`` and ``explain`` alike,
so a guard added once holds everywhere.

=================  ==========================================  =======================================
module             reads                                       refuses (as :class:`DataError`, by name)
=================  ==========================================  =======================================
:mod:`.nifti`      ``.nii``, ``.nii.gz`` volumes (RAS+)         not NIfTI, truncated, not 3-D, empty,
                                                               over :data:`MAX_VOLUME_BYTES`
:mod:`.pictures`   PNG, JPEG, BMP, TIFF, GIF, WebP             damaged, truncated, over
                                                               :data:`MAX_IMAGE_PIXELS` (or a file
                                                               over :data:`MAX_PICTURE_FILE_BYTES`)
:mod:`.dicom`      DICOM (pydicom), every frame                damaged, over :data:`MAX_IMAGE_PIXELS`
                                                               pixels or :data:`MAX_DICOM_BYTES`
                                                               inflated
:mod:`.manifest`   CSV / JSON / JSON-lines manifests and the   NUL bytes, over-long names, link loops,
                   paths their rows name                       paths outside the data root
=================  ==========================================  =======================================

:mod:`.limits` holds the bounds and the guard (:func:`~.limits.decoding`) that turns any failure while
decoding, ``MemoryError`` included, into a :class:`DataError` naming the file.
"""

from typing import TYPE_CHECKING

from ...lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        ".dicom": ("is_dicom", "read_dicom"),
        ".limits": (
            "MAX_CASE_BYTES",
            "MAX_DICOM_BYTES",
            "MAX_IMAGE_PIXELS",
            "MAX_PICTURE_FILE_BYTES",
            "MAX_VOLUME_BYTES",
            "decoding",
            "refuse_over",
        ),
        ".manifest": ("listed_file", "locate_manifest", "read_manifest"),
        ".nifti": ("NiftiHeader", "canonical_geometry", "read_header", "read_volume"),
        ".pictures": (
            "KEEP_MODES",
            "open_picture",
            "picture_array",
            "picture_file_bytes",
            "picture_file_bytes",
            "read_picture",
            "to_uint16",
        ),
    },
)

if TYPE_CHECKING:
    from .dicom import is_dicom, read_dicom
    from .limits import (
        MAX_CASE_BYTES,
        MAX_DICOM_BYTES,
        MAX_IMAGE_PIXELS,
        MAX_PICTURE_FILE_BYTES,
        MAX_VOLUME_BYTES,
        decoding,
        refuse_over,
    )
    from .manifest import listed_file, locate_manifest, read_manifest
    from .nifti import NiftiHeader, canonical_geometry, read_header, read_volume
    from .pictures import (
        KEEP_MODES,
        open_picture,
        picture_array,
        picture_file_bytes,
        read_picture,
        to_uint16,
    )

__all__ = [
    "KEEP_MODES",
    "MAX_CASE_BYTES",
    "MAX_DICOM_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_PICTURE_FILE_BYTES",
    "MAX_VOLUME_BYTES",
    "NiftiHeader",
    "canonical_geometry",
    "decoding",
    "is_dicom",
    "listed_file",
    "locate_manifest",
    "open_picture",
    "picture_array",
    "picture_file_bytes",
    "read_dicom",
    "read_header",
    "read_manifest",
    "read_picture",
    "read_volume",
    "refuse_over",
    "to_uint16",
]
