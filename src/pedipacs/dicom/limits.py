"""What decoding a stored object may cost, checked before any decoder allocates memory.

A compressed object of a few kilobytes can state Rows x Columns x Number of Frames that decode
to terabytes, its JPEG or JPEG 2000 codestream can state other dimensions than its header, and a
Deflated Explicit VR Little Endian dataset can inflate a thousand times: each is measured here
against a limit before pydicom, a codec or Pillow is asked to decode it, and refused with
DecodedSizeTooLargeError. The limits are constants: they protect the server's memory, which no
setting describes, and each says why it is as large as it is.
"""

from __future__ import annotations

import zlib
from struct import unpack
from typing import BinaryIO

from PIL import Image
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import DeflatedExplicitVRLittleEndian

from pedipacs.errors import DecodedSizeTooLargeError

MiB = 1024**2
GiB = 1024**3

# One decoded frame. The largest single images met in practice (a 16-bit 4,096 x 5,120
# mammogram, a 10,000 x 10,000 RGB slide overview) are 40-300 MiB; past 1 GiB it is a bomb.
MAX_DECODED_FRAME_BYTES = 1 * GiB
# Frames decoded together and held at once (transcoding a whole object, a WADO-RS frame list):
# a breast tomosynthesis volume, the largest common case, decodes to about 2 GiB.
MAX_DECODED_OBJECT_BYTES = 4 * GiB
# Rendering holds a frame as 64-bit floats, in a few copies at once: 2**26 samples (8,192 x
# 8,192 grey) is 512 MiB per copy. Larger frames are retrieved, not rendered.
MAX_RENDERED_FRAME_SAMPLES = 2**26
# The image a rendering produces (after scaling to the viewport): 8,192 x 8,192 at most, so a
# client's `viewport=60000,60000` cannot make the server draw 3.6 gigapixels.
MAX_RENDERED_PIXELS = 2**26
# Every frame of an animated GIF is kept until the file is written: 1,000 frames of 512 x 512.
MAX_ANIMATED_PIXELS = 2**28
# A deflated dataset (PS3.5 A.5) is inflated whole before its first attribute is read. It may
# inflate to no more than the default object size limit, and past 8 MiB to no more than 200
# times its deflated size: deflate gains 2-10x on DICOM, 200x is padding or a bomb.
MAX_INFLATED_DATASET_BYTES = 2 * GiB
MAX_INFLATE_RATIO = 200
INFLATE_RATIO_FREE_BYTES = 8 * MiB

# Pillow decodes JPEG and JPEG 2000 frames for pydicom's "pillow" plugin and checks the pixel
# count the codestream states: above MAX_IMAGE_PIXELS it warns, above twice that it refuses
# (DecompressionBombError). Its default (89,478,485 pixels, ~0.25 GiB of RGB) would warn on a
# large mammogram; set so that it refuses what our frame limit refuses at one byte a sample.
PILLOW_MAX_IMAGE_PIXELS = MAX_DECODED_FRAME_BYTES // 2
Image.MAX_IMAGE_PIXELS = PILLOW_MAX_IMAGE_PIXELS

_INFLATE_CHUNK = 1 * MiB


def decoded_frame_bytes(
    rows: int, columns: int, samples_per_pixel: int, bits_allocated: int
) -> int:
    """The memory one decoded frame takes: pydicom gives each sample a whole 1, 2, 4 or 8 byte
    integer (1-bit data is unpacked to a byte a pixel).

    >>> decoded_frame_bytes(512, 512, 1, 16)
    524288
    >>> decoded_frame_bytes(8, 8, 1, 1)
    64
    """
    return abs(rows) * abs(columns) * max(abs(samples_per_pixel), 1) * _sample_bytes(bits_allocated)


def check_decoded_size(frame_bytes: int, frames: int = 1) -> None:
    """Refuse a frame over MAX_DECODED_FRAME_BYTES, or `frames` of them over
    MAX_DECODED_OBJECT_BYTES (frames decoded to be held together).

    >>> check_decoded_size(512 * 512 * 2, frames=1000)  # a 1,000-slice CT: 500 MiB
    >>> check_decoded_size(65535 * 65535 * 2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    pedipacs.errors.DecodedSizeTooLargeError: a decoded frame would take 8589672450 bytes, ...
    """
    if frame_bytes > MAX_DECODED_FRAME_BYTES:
        raise DecodedSizeTooLargeError(
            f"a decoded frame would take {frame_bytes} bytes, more than the limit of "
            f"{MAX_DECODED_FRAME_BYTES}"
        )
    if frame_bytes * frames > MAX_DECODED_OBJECT_BYTES:
        raise DecodedSizeTooLargeError(
            f"{frames} decoded frames would take {frame_bytes * frames} bytes, more than the "
            f"limit of {MAX_DECODED_OBJECT_BYTES}; ask for fewer frames or the stored encoding"
        )


def check_codestream(frame: bytes) -> None:
    """Refuse a JPEG, JPEG-LS or JPEG 2000 frame whose own header states a decoded size over
    MAX_DECODED_FRAME_BYTES: the codec allocates what the codestream says, whatever the DICOM
    header says. Anything else (RLE, native, unparseable) is left to the header check.
    """
    size = codestream_decoded_bytes(frame)
    if size is not None and size > MAX_DECODED_FRAME_BYTES:
        raise DecodedSizeTooLargeError(
            f"the frame's codestream states a decoded size of {size} bytes, more than the "
            f"limit of {MAX_DECODED_FRAME_BYTES}"
        )


def codestream_decoded_bytes(frame: bytes) -> int | None:
    """The decoded size a frame's codestream header states; None when it is not one we parse.

    >>> sof = bytes.fromhex("ffd8 ffc0 0011 08 0200 0100 03 011100 021100 031100")
    >>> codestream_decoded_bytes(sof)  # 256 x 512, 3 components of 8 bits
    393216
    """
    if frame.startswith(b"\xff\xd8"):
        return _jpeg_decoded_bytes(frame)
    if frame.startswith(_J2K_START):
        return _j2k_decoded_bytes(frame, 0)
    if frame.startswith(_JP2_SIGNATURE):
        return _jp2_decoded_bytes(frame)
    return None


def check_inflated_size(stream: BinaryIO) -> None:
    """Refuse a Part 10 object in the Deflated Explicit VR Little Endian syntax that inflates
    past MAX_INFLATED_DATASET_BYTES, or past MAX_INFLATE_RATIO times its deflated size once over
    INFLATE_RATIO_FREE_BYTES. The stream is inflated in chunks that are counted and dropped, so
    the check itself holds at most a chunk; it is left where it was found. An object of another
    syntax, or one too damaged to read, passes: its own parser reports the damage.
    """
    start = stream.tell()
    try:
        try:
            read_preamble(stream, False)
            syntax = _read_file_meta_info(stream).get("TransferSyntaxUID")
        except Exception:  # not Part 10 or a damaged File Meta: the caller's parser says so
            return
        if syntax != DeflatedExplicitVRLittleEndian:
            return
        _count_inflated(stream)
    finally:
        stream.seek(start)


def _count_inflated(stream: BinaryIO) -> None:
    dataset_start = stream.tell()
    deflated = stream.seek(0, 2) - dataset_start
    stream.seek(dataset_start)
    limit = max(INFLATE_RATIO_FREE_BYTES, deflated * MAX_INFLATE_RATIO)
    limit = min(limit, MAX_INFLATED_DATASET_BYTES)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflated = 0
    try:
        while not inflater.eof and (data := stream.read(_INFLATE_CHUNK)):
            while data and not inflater.eof:  # bytes after the stream's end are not counted
                inflated += len(inflater.decompress(data, _INFLATE_CHUNK))
                if inflated > limit:
                    raise DecodedSizeTooLargeError(
                        f"the {deflated} byte deflated dataset inflates past {limit} bytes "
                        f"(at most {MAX_INFLATED_DATASET_BYTES}, or {MAX_INFLATE_RATIO} times "
                        f"its deflated size past {INFLATE_RATIO_FREE_BYTES})"
                    )
                data = inflater.unconsumed_tail
    except zlib.error:
        return  # a damaged stream: pydicom's inflate reports it


def _sample_bytes(bits: int) -> int:
    bits = abs(bits)
    for size in (1, 2, 4, 8):
        if bits <= size * 8:
            return size
    return -(-bits // 8)


# --- Codestream headers ------------------------------------------------------------------

# JPEG start-of-frame markers (ITU T.81 B.1.1.3: SOF0-SOF15 but DHT, JPG and DAC) and JPEG-LS
# SOF55 (ITU T.87 C.2.2); every one has the same layout.
_SOF_MARKERS = frozenset({*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC} | {0xF7})
# Markers without a length: TEM, RST0-RST7 and SOI.
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD9)})
_START_OF_SCAN, _END_OF_IMAGE = 0xDA, 0xD9
_J2K_START = b"\xff\x4f\xff\x51"  # SOC then SIZ (ITU T.800 A.5)
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_MAX_JP2_BOXES = 64


def _jpeg_decoded_bytes(data: bytes) -> int | None:
    position = 2  # after SOI
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte before the marker
            position += 1
            continue
        if marker in _STANDALONE_MARKERS:
            position += 2
            continue
        if marker in (_START_OF_SCAN, _END_OF_IMAGE):
            return None  # no frame header before the scan: not ours to judge
        if marker in _SOF_MARKERS:
            if position + 10 > len(data):
                return None
            precision = data[position + 4]
            height, width = unpack(">HH", data[position + 5 : position + 9])
            components = data[position + 9]
            # A height of 0 is set later by a DNL marker: assume the largest it can say.
            size: int = (height or 0xFFFF) * width * components * _sample_bytes(precision)
            return size
        (length,) = unpack(">H", data[position + 2 : position + 4])
        position += 2 + length
    return None


def _j2k_decoded_bytes(data: bytes, start: int) -> int | None:
    # SOC, SIZ, Lsiz, Rsiz, then Xsiz, Ysiz, XOsiz, YOsiz (32-bit each), four tile fields,
    # Csiz (16-bit) and, per component, Ssiz (precision - 1, high bit for signed), XRsiz, YRsiz.
    header = data[start + 8 : start + 42]
    if len(header) < 34:
        return None
    width_end, height_end, width_origin, height_origin = unpack(">4L", header[:16])
    (components,) = unpack(">H", header[32:34])
    sizes = data[start + 42 : start + 42 + 3 * components : 3]
    if len(sizes) < components:
        return None
    width: int = max(width_end - width_origin, 0)
    height: int = max(height_end - height_origin, 0)
    return sum(width * height * _sample_bytes((size & 0x7F) + 1) for size in sizes)


def _jp2_decoded_bytes(data: bytes) -> int | None:
    """The codestream inside a JP2 file (ISO 15444-1 Annex I): the first `jp2c` box."""
    position = 0
    for _ in range(_MAX_JP2_BOXES):
        head = data[position : position + 16]
        if len(head) < 8:
            return None
        length, kind = unpack(">L4s", head[:8])
        header = 8
        if length == 1 and len(head) == 16:
            (length,) = unpack(">Q", head[8:16])
            header = 16
        if kind == b"jp2c":
            start = position + header
            return _j2k_decoded_bytes(data, start) if data.startswith(_J2K_START, start) else None
        if length < header:  # 0: the box runs to the end, and it is not the codestream
            return None
        position += length
    return None
