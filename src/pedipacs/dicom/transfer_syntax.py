"""Transfer syntax conversion for peers that cannot take the stored encoding.

Decoding uses pydicom's pixel data plugins (pylibjpeg, openjpeg, libjpeg, RLE, GDCM); encoding
to a compressed syntax is offered only for the lossless ones pydicom can write. A compressed
object is decoded whole, so its decoded size is checked first (dicom.limits).
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from pedipacs.dicom.limits import check_codestream, check_decoded_size, decoded_frame_bytes
from pedipacs.errors import TranscodingError

NATIVE_SYNTAXES = frozenset(
    {
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
    }
)
LOSSLESS_ENCODABLE = (RLELossless, JPEGLSLossless, JPEG2000Lossless)
# What `transcode` can turn any decodable object into.
PRODUCIBLE_SYNTAXES = frozenset({*NATIVE_SYNTAXES, *LOSSLESS_ENCODABLE})

# The order in which a retrieve falls back when the stored syntax is refused.
FALLBACK_ORDER = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, *LOSSLESS_ENCODABLE)


def transcode(dataset: Dataset, target: str) -> Dataset:
    """Re-encode `dataset` (read with its file meta) in the `target` transfer syntax.

    TranscodingError when it cannot be done; DecodedSizeTooLargeError, before any decoding,
    when the compressed pixel data would decode to more than dicom.limits allows.
    """
    source = UID(str(dataset.file_meta.TransferSyntaxUID))
    target_uid = UID(target)
    if source == target_uid:
        return dataset
    needs_decoding = "PixelData" in dataset and source not in NATIVE_SYNTAXES
    if needs_decoding:
        _check_decoded_size(dataset)
    try:
        if needs_decoding:
            _decompress(dataset)
        if target_uid in NATIVE_SYNTAXES:
            dataset.file_meta.TransferSyntaxUID = target_uid
            # The writer follows the dataset's own encoding flags, so they must agree.
            dataset.set_original_encoding(
                target_uid.is_implicit_VR,
                target_uid.is_little_endian,
                dataset.original_character_set,
            )
            return dataset
        if target_uid in LOSSLESS_ENCODABLE and "PixelData" in dataset:
            dataset.compress(target_uid)
            return dataset
    except Exception as error:  # codec errors come in many types; all mean "cannot"
        raise TranscodingError(
            f"cannot convert {source.name} to {target_uid.name}: {error}"
        ) from error
    raise TranscodingError(f"cannot convert {source.name} to {target_uid.name}")


# Decoders disagree on odd files (e.g. a J2K stream whose signedness contradicts the header);
# the first that succeeds wins.
DECODING_PLUGINS = ("pylibjpeg", "gdcm", "pyjpegls", "pillow")


def _check_decoded_size(dataset: Dataset) -> None:
    """Every frame is decoded and held at once: check the header's size, then each codestream."""
    frame = decoded_frame_bytes(
        _integer(dataset, "Rows"),
        _integer(dataset, "Columns"),
        _integer(dataset, "SamplesPerPixel"),
        _integer(dataset, "BitsAllocated"),
    )
    check_decoded_size(frame, _integer(dataset, "NumberOfFrames") or 1)
    fragments = generate_fragments(dataset.PixelData)
    try:
        next(fragments, None)  # the Basic Offset Table
        for fragment in fragments:  # only a frame's first fragment starts with a codestream
            check_codestream(fragment)
    except (ValueError, TypeError):
        return  # malformed encapsulation: the decoder reports it


def _integer(dataset: Dataset, keyword: str) -> int:
    """A header integer, 0 when absent or garbled (the decoder then refuses the object)."""
    try:
        return int(dataset.get(keyword) or 0)
    except (TypeError, ValueError):
        return 0


def _decompress(dataset: Dataset) -> None:
    errors: list[str] = []
    for plugin in DECODING_PLUGINS:
        try:
            dataset.decompress(decoding_plugin=plugin)
            return
        except Exception as error:  # the next plugin may cope
            errors.append(f"{plugin}: {error}")
    raise TranscodingError("; ".join(errors))
