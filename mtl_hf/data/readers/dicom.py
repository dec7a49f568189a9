"""The DICOM reader of training, ``predict`` and ``explain`` (pydicom; install ``mtl-hf[dicom]``), with
its guards.

Before any pixel is decoded, the header's rows × columns × frames is checked against
:data:`~mtl_hf.data.readers.limits.MAX_IMAGE_PIXELS`. pydicom inflates a file in the deflated transfer
syntax whole before reading any element, so such a file's header is read here from at most
:data:`HEADER_BYTES` inflated, and the file, once its pixels pass, is inflated in bounded pieces to
count its size against :data:`~mtl_hf.data.readers.limits.MAX_DICOM_BYTES`. Decoding
and every conversion run under the same guard: a damaged file, a codec error or running out of memory
give a :class:`~mtl_hf.data.DataError` naming the file.

Frames come out as the training cache stores them: ``PALETTE COLOR`` goes through its colour table to
RGB; ``MONOCHROME1`` is inverted (bright = high signal); grey data that is not 8-bit is min-max scaled
to 16 bits over all frames; RGB data above 8 bits is scaled to 8 bits; colour becomes grey (ITU-R 601)
only when asked (``grayscale=True``).
"""

from __future__ import annotations

import os
import zlib
from typing import Any, BinaryIO, cast

import numpy as np

from ..errors import DataError
from .limits import MAX_DICOM_BYTES, decoding, refuse_over
from .pictures import check_pixels, to_uint16
from .suffixes import DICOM_SUFFIXES

DEFLATED = "1.2.840.10008.1.2.1.99"
"""Deflated Explicit VR Little Endian."""
LUMA = np.array([0.299, 0.587, 0.114])


def read_dicom(path: str | os.PathLike[str], grayscale: bool = False) -> list[np.ndarray]:
    """Frames of a DICOM file as ``uint8`` (grey or RGB) or ``uint16`` (grey) ``(H, W[, 3])`` arrays.

    Raises:
        DataError: pydicom missing, no pixel data, damaged, larger than the limits, or undecodable.
    """
    where = os.fspath(path)
    try:
        import pydicom
    except ImportError as exc:
        raise DataError(where, "reading DICOM needs pydicom: pip install 'mtl-hf[dicom]'") from exc
    from pydicom.pixels import apply_color_lut

    with decoding(where, "DICOM"):
        meta = pydicom.filereader.read_file_meta_info(where)
        deflated = str(getattr(meta, "TransferSyntaxUID", "")) == DEFLATED
        header = _deflated_header(where) if deflated else pydicom.dcmread(where, stop_before_pixels=True)
        rows, columns = int(getattr(header, "Rows", 0) or 0), int(getattr(header, "Columns", 0) or 0)
        frames = int(getattr(header, "NumberOfFrames", 1) or 1)
        check_pixels(
            where, f"DICOM pixel data of {frames} x {rows} x {columns}", rows * columns * max(frames, 1)
        )
        if deflated:
            refuse_over(where, "the inflated DICOM data set", _inflated_size(where), MAX_DICOM_BYTES)
        ds = pydicom.dcmread(where)
        if "PixelData" not in ds:
            raise DataError(where, "DICOM file has no pixel data")
        array = ds.pixel_array
        photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
        if photometric == "PALETTE COLOR":
            array = apply_color_lut(array, ds)
        colour = array.ndim == (4 if frames > 1 else 3) and array.shape[-1] == 3
        if frames == 1:
            array = array[None]
        if array.ndim != (4 if colour else 3):
            raise DataError(where, f"unexpected DICOM pixel array shape {array.shape}")
        if colour:
            if array.dtype != np.uint8:
                top = max(float(array.max()), 1.0)
                array = np.stack([(f / top * 255).round().astype(np.uint8) for f in array])
            if grayscale:
                array = np.stack([(f @ LUMA).round().clip(0, 255).astype(np.uint8) for f in array])
        else:
            if photometric == "MONOCHROME1":
                array = array.max() - array
            if array.dtype != np.uint8:
                array = to_uint16(array)
        return [np.ascontiguousarray(a) for a in array]


HEADER_BYTES = 4 * 2**20
"""Most bytes of a deflated data set inflated to read the elements before its pixel data."""


def _deflated_header(path: str) -> Any:
    """The elements before the pixel data of a deflated DICOM, inflating at most :data:`HEADER_BYTES`
    (pydicom inflates the whole file before reading any element)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import _at_pixel_data, read_dataset

    with open(path, "rb") as f:
        _skip_file_meta(f)
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        data = b""
        while len(data) < HEADER_BYTES and not inflater.eof:
            chunk = inflater.unconsumed_tail or f.read(1 << 16)
            if not chunk:
                break
            data += inflater.decompress(chunk, HEADER_BYTES - len(data))
    return read_dataset(cast(BinaryIO, DicomBytesIO(data)), False, True, stop_when=_at_pixel_data)


def _skip_file_meta(f: BinaryIO) -> None:
    import pydicom

    pydicom.filereader.read_preamble(f, False)
    pydicom.filereader._read_file_meta_info(f)


def _inflated_size(path: str) -> int:
    """Bytes of a deflated DICOM once inflated, counted in bounded pieces (stops past the limit)."""
    with open(path, "rb") as f:
        _skip_file_meta(f)
        start = f.tell()
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        total = start
        chunk = f.read(1 << 16)
        while chunk and total <= MAX_DICOM_BYTES:
            piece = inflater.decompress(chunk, 1 << 24)
            total += len(piece)
            while inflater.unconsumed_tail and total <= MAX_DICOM_BYTES:
                piece = inflater.decompress(inflater.unconsumed_tail, 1 << 24)
                total += len(piece)
            if inflater.eof:
                break
            chunk = f.read(1 << 16)
    return total


def is_dicom(path: str | os.PathLike[str], known_suffixes: tuple[str, ...] = ()) -> bool:
    """By suffix (``.dcm``, ``.dicom``), else by the ``DICM`` marker after the 128-byte preamble;
    a name ending in one of ``known_suffixes`` (another format's) is not DICOM."""
    name = os.fspath(path).lower()
    if name.endswith(DICOM_SUFFIXES):
        return True
    if name.endswith(known_suffixes):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"
