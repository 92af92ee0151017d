"""Content negotiation for DICOMweb (PS3.18 8.7): what the client's Accept header asks for.

A client names a media type, for multipart responses the type of each part, and optionally a
transfer syntax (`*` meaning "as stored"). The first acceptable choice, by quality, wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from pedipacs.errors import InvalidInput, PedipacsError

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
OCTET_STREAM = "application/octet-stream"
ANY_SYNTAX = "*"


class NotAcceptableError(PedipacsError):
    """Nothing the client accepts can be produced (HTTP 406)."""


class UnsupportedMediaTypeError(InvalidInput):
    """The request body is of a media type this resource does not take (HTTP 415)."""


@dataclass(frozen=True, slots=True)
class MediaRange:
    """One entry of an Accept header."""

    media_type: str  # e.g. multipart/related, application/dicom, image/jpeg, */*
    part_type: str | None = None  # the `type` parameter of multipart/related
    transfer_syntax: str | None = None
    quality: float = 1.0


def parse_accept(header: str | None) -> list[MediaRange]:
    """The Accept header's media ranges, best first; an absent header accepts anything.

    >>> parse_accept('multipart/related; type="application/dicom"; transfer-syntax=*')
    [MediaRange(media_type='multipart/related', part_type='application/dicom', \
transfer_syntax='*', quality=1.0)]
    """
    if not header or not header.strip():
        return [MediaRange("*/*")]
    ranges = [_media_range(item) for item in _split_outside_quotes(header, ",") if item.strip()]
    return sorted(ranges, key=lambda r: -r.quality)


def _media_range(text: str) -> MediaRange:
    media_type, *parameters = _split_outside_quotes(text, ";")
    values: dict[str, str] = {}
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        values[name.strip().lower()] = value.strip().strip('"')
    try:
        quality = float(values.get("q", "1"))
    except ValueError:
        quality = 1.0
    return MediaRange(
        media_type.strip().lower(),
        part_type=values.get("type", "").lower() or None,
        transfer_syntax=values.get("transfer-syntax") or None,
        quality=quality,
    )


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for character in text:
        if character == '"':
            quoted = not quoted
        if character == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(character)
    parts.append("".join(current))
    return parts


def _matches(offered: str, accepted: str) -> bool:
    if accepted in ("*/*", offered):
        return True
    return accepted.endswith("/*") and offered.startswith(accepted[:-1])


def choose(accept: Sequence[MediaRange], offered: Sequence[str]) -> str:
    """The first offered media type (not multipart) that the client accepts."""
    for media_range in accept:
        for media_type in offered:
            if _matches(media_type, media_range.media_type):
                return media_type
    raise NotAcceptableError(f"this resource is available as {', '.join(offered)}")


# -- instances and frames --------------------------------------------------------------------

# The media type of a frame in each compressed transfer syntax (PS3.18 Table 8.7.3-5).
FRAME_MEDIA_TYPES: dict[str, str] = {
    JPEGBaseline8Bit: "image/jpeg",
    JPEGExtended12Bit: "image/jpeg",
    JPEGLosslessSV1: "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    JPEGLSLossless: "image/jls",
    JPEGLSNearLossless: "image/jls",
    JPEG2000Lossless: "image/jp2",
    JPEG2000: "image/jp2",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    RLELossless: "image/dicom-rle",
}
NATIVE_FRAME_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


@dataclass(frozen=True, slots=True)
class Choice:
    """What to send: the part media type and the transfer syntax (None: as stored)."""

    part_type: str
    transfer_syntax: str | None


def instance_choice(accept: Sequence[MediaRange]) -> Choice:
    """WADO-RS study/series/instance retrieve: DICOM parts; Explicit VR LE unless told."""
    for media_range in accept:
        is_multipart = media_range.media_type in ("*/*", "multipart/*", "multipart/related")
        if (is_multipart and media_range.part_type in (None, DICOM, "*/*")) or (
            media_range.media_type == DICOM
        ):
            return Choice(DICOM, _syntax(media_range.transfer_syntax, ExplicitVRLittleEndian))
    raise NotAcceptableError(
        'instances are sent as multipart/related; type="application/dicom" '
        "(with an optional transfer-syntax parameter)"
    )


def frame_choice(accept: Sequence[MediaRange], stored_syntax: str) -> Choice:
    """WADO-RS frames and pixel bulk data: the stored frames, or uncompressed pixels.

    `transfer-syntax=*` (what OHIF asks for), the stored syntax, or the stored syntax's media
    type get the frames as stored; application/octet-stream without a syntax, or with Explicit
    VR Little Endian, gets them decoded to little endian pixels.
    """
    stored_media_type = FRAME_MEDIA_TYPES.get(stored_syntax, OCTET_STREAM)
    for media_range in accept:
        is_multipart = media_range.media_type.startswith("multipart/")
        wanted = (media_range.part_type or "*/*") if is_multipart else media_range.media_type
        syntax = media_range.transfer_syntax
        if syntax in (ANY_SYNTAX, stored_syntax):
            # The parts keep the media type asked for (OHIF asks application/octet-stream with
            # `*`); their transfer-syntax parameter tells the client how to decode them.
            part_type = wanted if wanted in (OCTET_STREAM, stored_media_type) else stored_media_type
            return Choice(part_type, None)
        if syntax is None and wanted == stored_media_type:
            return Choice(stored_media_type, None)
        if wanted in ("*/*", OCTET_STREAM) and syntax in (None, *NATIVE_FRAME_SYNTAXES):
            return Choice(OCTET_STREAM, ExplicitVRLittleEndian)
    raise NotAcceptableError(
        f"frames are available as {stored_media_type} (transfer-syntax={stored_syntax} or *) "
        f"and as {OCTET_STREAM} (transfer-syntax={ExplicitVRLittleEndian})"
    )


def _syntax(requested: str | None, default: str) -> str | None:
    if requested is None:
        return default
    if requested == ANY_SYNTAX:
        return None
    if not UID(requested).is_valid:
        raise NotAcceptableError(f"transfer-syntax {requested!r} is not a UID")
    return requested
