"""Raw frame access for WADO-RS `/frames`: read one frame without reading the whole object.

The header is parsed up to the pixel data element, whose file offset is then known; a native
frame is a computed byte range, an encapsulated frame is found through the Extended Offset
Table, the Basic Offset Table or, failing both, by walking the fragment item headers
(PS3.5 A.4). Frames are returned as stored: no decoding and no byte swapping; only 1-bit
frames that share a byte with their neighbour are re-packed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from struct import unpack
from typing import BinaryIO

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from pedipacs.dicom.limits import check_inflated_size, decoded_frame_bytes
from pedipacs.errors import FrameNotFoundError, MissingAttributeError, NotDicomError

# A stored Part 10 object: a path, or a seekable binary file object holding it from offset 0.
DicomSource = Path | BinaryIO

_PIXEL_KEYWORDS = {
    0x7FE00008: "FloatPixelData",
    0x7FE00009: "DoubleFloatPixelData",
    0x7FE00010: "PixelData",
}
# Float and Double Float Pixel Data are always 32 and 64 bits, should Bits Allocated be absent.
_DEFAULT_BITS = {"FloatPixelData": 32, "DoubleFloatPixelData": 64}
_PIXEL_VRS = (b"OB", b"OW", b"OF", b"OD", b"UN")
_ITEM = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_UNDEFINED_LENGTH = 0xFFFFFFFF
# JPEG and JPEG-LS start of image, JPEG 2000 codestream start + SIZ, JP2 signature box.
_FRAME_STARTS = (b"\xff\xd8\xff", b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP  ")
_END_OF_IMAGE = b"\xff\xd9"
# pydicom's rule: a fragment ends a frame when EOI/EOC lies in its last bytes (padding after).
_END_WINDOW = 10


@dataclass(frozen=True, slots=True)
class PixelLayout:
    """How the pixel data of one object is laid out."""

    transfer_syntax_uid: str
    number_of_frames: int
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    is_encapsulated: bool
    photometric_interpretation: str
    pixel_data_keyword: str  # PixelData, FloatPixelData or DoubleFloatPixelData

    @property
    def bits_per_frame(self) -> int:
        """The size of one native frame, in bits."""
        bits = self.rows * self.columns * self.samples_per_pixel * self.bits_allocated
        if self.photometric_interpretation == "YBR_FULL_422" and not self.is_encapsulated:
            # Native 4:2:2 stores two chroma samples per two pixels (PS3.3 C.7.6.3.1.2).
            return bits // 3 * 2
        return bits

    @property
    def decoded_frame_bytes(self) -> int:
        """The memory one frame takes once decoded (see dicom.limits)."""
        return decoded_frame_bytes(
            self.rows, self.columns, self.samples_per_pixel, self.bits_allocated
        )

    def frame_index(self, frame_number: int) -> int:
        """The 0-based index of a 1-based frame number; FrameNotFoundError when out of range."""
        if not 1 <= frame_number <= self.number_of_frames:
            raise FrameNotFoundError(f"frame {frame_number} is outside 1..{self.number_of_frames}")
        return frame_number - 1


@dataclass(frozen=True, slots=True)
class _PixelValue:
    """Where the pixel data value lies: a file offset, or the value itself (deflated objects)."""

    offset: int
    length: int | None  # None: undefined length, i.e. encapsulated
    inflated: bytes | None = None


@dataclass(frozen=True, slots=True)
class _BitRange:
    """A native frame: bytes first..first+count, of which bits shift..shift+bits are the frame."""

    first: int
    count: int
    shift: int
    bits: int


@dataclass(frozen=True, slots=True)
class _ItemRange:
    """An encapsulated frame: the fragment items from start up to end (None: the delimiter)."""

    start: int
    end: int | None


@contextmanager
def open_dicom(source: DicomSource) -> Iterator[BinaryIO]:
    """Yield a binary stream for `source`; a path is opened here and closed on exit."""
    if isinstance(source, Path):
        with source.open("rb") as stream:
            yield stream
    else:
        yield source


def read_pixel_header(source: DicomSource) -> tuple[Dataset, PixelLayout | None]:
    """The header (every attribute before the pixel data) and the pixel layout, in one read.

    The layout is None for an object without pixel data (an SR, a PDF, a waveform).
    """
    with open_dicom(source) as stream:
        header, located = _locate(stream)
    return header, located[0] if located else None


def pixel_layout(source: DicomSource) -> PixelLayout:
    """The pixel layout of `source`; FrameNotFoundError when it has no pixel data."""
    _, layout = read_pixel_header(source)
    if layout is None:
        raise FrameNotFoundError("the object has no pixel data")
    return layout


def read_frames(source: DicomSource, frame_numbers: Sequence[int]) -> Iterator[bytes]:
    """Yield the stored bytes of each requested frame (1-based), in the order asked.

    Frame numbers and the frame boundaries are checked before the first frame is yielded, so
    a caller can still answer with an error; FrameNotFoundError for a number outside
    1..NumberOfFrames or an object without pixel data. A file object must stay open while
    the iterator is consumed; a path is reopened by the iterator.

    Native frames are byte ranges of the stored value, so for Explicit VR Big Endian they are
    big endian (8-bit data stored as OW even keeps its pairwise swap); a caller wanting little
    endian transcodes. 1-bit frames that do not start on a byte boundary are shifted to start
    at bit 0 of their first byte, their unused high bits zero (PS3.5 8.1.1). Encapsulated
    frames are their fragments concatenated, including any trailing padding byte.
    """
    with open_dicom(source) as stream:
        header, located = _locate(stream)
        if located is None:
            raise FrameNotFoundError("the object has no pixel data")
        layout, value = located
        indices = [layout.frame_index(number) for number in frame_numbers]
        if layout.is_encapsulated:
            table = _encapsulated_frames(stream, value, layout, header)
            ranges: list[_BitRange | _ItemRange] = [_listed(table, i) for i in indices]
        else:
            ranges = [_native_frame(layout, value, i) for i in indices]
    return _frames(source, value, ranges)


def _frames(
    source: DicomSource, value: _PixelValue, ranges: list[_BitRange | _ItemRange]
) -> Iterator[bytes]:
    with _value_stream(source, value) as stream:
        for each in ranges:
            if isinstance(each, _BitRange):
                yield _read_bits(stream, each)
            else:
                yield b"".join(_read_items(stream, each))


@contextmanager
def _value_stream(source: DicomSource, value: _PixelValue) -> Iterator[BinaryIO]:
    if value.inflated is not None:
        yield BytesIO(value.inflated)
    else:
        with open_dicom(source) as stream:
            yield stream


# --- Locating the pixel data ----------------------------------------------------------


def _locate(stream: BinaryIO) -> tuple[Dataset, tuple[PixelLayout, _PixelValue] | None]:
    stream.seek(0)  # a file object may have been read before, e.g. by another call here
    check_inflated_size(stream)  # a deflated dataset is inflated whole by the first dcmread
    try:
        header = dcmread(stream, stop_before_pixels=True)
    except Exception as error:  # pydicom raises many types on garbage
        raise NotDicomError(f"not a readable DICOM Part 10 object: {error}") from error
    syntax = UID(str(header.file_meta.get("TransferSyntaxUID", "") or ""))
    if not syntax:
        raise NotDicomError("the File Meta Information has no Transfer Syntax UID")
    if syntax == DeflatedExplicitVRLittleEndian:
        found = _inflated_pixel_value(stream)
    else:
        # dcmread leaves a stream stopped before the pixel data at that element's tag.
        found = _pixel_element(stream, syntax)
    if found is None:
        return header, None
    keyword, value = found
    return header, (_layout(header, syntax, keyword, value), value)


def _pixel_element(stream: BinaryIO, syntax: UID) -> tuple[str, _PixelValue] | None:
    start = stream.tell()
    head = stream.read(8)
    if len(head) < 8:
        return None
    endian = "<" if syntax.is_little_endian else ">"
    group, element, length = unpack(f"{endian}HHL", head)
    keyword = _PIXEL_KEYWORDS.get(group << 16 | element)
    if keyword is None:
        return None
    offset = start + 8
    # Some writers use implicit VR despite an explicit syntax; pydicom copes, and so do we.
    if not syntax.is_implicit_VR and head[4:6] in _PIXEL_VRS:
        # Explicit VR: OB/OW/OF/OD/UN have two reserved bytes, then a 32-bit length.
        (length,) = unpack(f"{endian}L", stream.read(4))
        offset += 4
    if length == _UNDEFINED_LENGTH and not syntax.is_little_endian:
        raise NotDicomError("encapsulated pixel data in a big endian transfer syntax")
    return keyword, _PixelValue(offset, None if length == _UNDEFINED_LENGTH else length)


def _inflated_pixel_value(stream: BinaryIO) -> tuple[str, _PixelValue] | None:
    # A deflated dataset cannot be seeked into: inflate it whole (it is always native).
    stream.seek(0)
    dataset = dcmread(stream)
    for keyword in _PIXEL_KEYWORDS.values():
        if keyword in dataset:
            data = bytes(dataset[keyword].value)
            return keyword, _PixelValue(0, len(data), inflated=data)
    return None


def _layout(header: Dataset, syntax: UID, keyword: str, value: _PixelValue) -> PixelLayout:
    rows, columns = _integer(header, "Rows", None), _integer(header, "Columns", None)
    bits = _integer(header, "BitsAllocated", _DEFAULT_BITS.get(keyword))
    if not rows or not columns or not bits:
        raise MissingAttributeError("pixel data without Rows, Columns or BitsAllocated")
    return PixelLayout(
        transfer_syntax_uid=str(syntax),
        # pydicom's rule: an absent or zero Number of Frames means one frame.
        number_of_frames=_integer(header, "NumberOfFrames", 1) or 1,
        rows=rows,
        columns=columns,
        samples_per_pixel=_integer(header, "SamplesPerPixel", 1) or 1,
        bits_allocated=bits,
        is_encapsulated=value.length is None,
        photometric_interpretation=str(header.get("PhotometricInterpretation", "") or ""),
        pixel_data_keyword=keyword,
    )


def _integer(header: Dataset, keyword: str, default: int | None) -> int | None:
    value = header.get(keyword)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise NotDicomError(f"{keyword} {value!r} is not an integer") from error


# --- Native frames --------------------------------------------------------------------


def _native_frame(layout: PixelLayout, value: _PixelValue, index: int) -> _BitRange:
    bits = layout.bits_per_frame
    start_bit = index * bits
    first, end = start_bit // 8, -(-(start_bit + bits) // 8)
    if value.length is not None and end > value.length:
        raise FrameNotFoundError(
            f"the pixel data ({value.length} bytes) is too short for frame {index + 1}"
        )
    return _BitRange(value.offset + first, end - first, start_bit % 8, bits)


def _read_bits(stream: BinaryIO, frame: _BitRange) -> bytes:
    stream.seek(frame.first)
    data = stream.read(frame.count)
    if len(data) != frame.count:
        raise FrameNotFoundError("the pixel data ends before the frame (truncated object)")
    if frame.shift == 0 and frame.bits % 8 == 0:
        return data
    # 1-bit data: frames are packed back to back, so re-pack this one from bit 0.
    bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
    return np.packbits(bits[frame.shift : frame.shift + frame.bits], bitorder="little").tobytes()


# --- Encapsulated frames ----------------------------------------------------------------


def _listed(table: list[_ItemRange], index: int) -> _ItemRange:
    if index >= len(table):
        raise FrameNotFoundError(
            f"the encapsulated pixel data holds {len(table)} frames, not {index + 1}"
        )
    return table[index]


def _encapsulated_frames(
    stream: BinaryIO, value: _PixelValue, layout: PixelLayout, header: Dataset
) -> list[_ItemRange]:
    """Where each frame's fragments lie, preferring the offset tables when they fit."""
    basic = _basic_offset_table(stream, value.offset)
    first = value.offset + 8 + 4 * len(basic)  # the first fragment's item tag
    frames = layout.number_of_frames
    extended = _extended_offsets(header)
    if len(extended) == frames:
        return [_ItemRange(first + offset, first + offset + 8 + size) for offset, size in extended]
    if len(basic) == frames and basic[0] == 0 and basic == sorted(set(basic)):
        ends: list[int | None] = [first + offset for offset in basic[1:]]
        ends.append(None)  # the last frame runs to the sequence delimiter
        return [_ItemRange(first + offset, end) for offset, end in zip(basic, ends, strict=True)]
    return _frames_from_fragments(stream, _fragments(stream, first), frames)


def _basic_offset_table(stream: BinaryIO, offset: int) -> list[int]:
    stream.seek(offset)
    item = _item_header(stream)
    if item is None or item[0] != _ITEM or item[1] % 4:
        raise NotDicomError("the encapsulated pixel data does not start with an offset table")
    table = stream.read(item[1])
    if len(table) != item[1]:
        raise NotDicomError("the object ends inside the Basic Offset Table")
    return list(unpack(f"<{len(table) // 4}L", table))


def _extended_offsets(header: Dataset) -> list[tuple[int, int]]:
    offsets = header.get("ExtendedOffsetTable")
    lengths = header.get("ExtendedOffsetTableLengths")
    if not offsets or not lengths or len(offsets) != len(lengths):
        return []
    count = len(offsets) // 8
    return list(zip(unpack(f"<{count}Q", offsets), unpack(f"<{count}Q", lengths), strict=True))


def _item_header(stream: BinaryIO) -> tuple[int, int] | None:
    """The next item's (tag, length); None where the object ends (truncated)."""
    head = stream.read(8)
    if len(head) < 8:
        return None
    group, element, length = unpack("<HHL", head)
    return group << 16 | element, length


def _fragments(stream: BinaryIO, first: int) -> list[tuple[int, int]]:
    """Each fragment's (item tag offset, value length), reading item headers only."""
    fragments: list[tuple[int, int]] = []
    position = first
    while True:
        stream.seek(position)
        item = _item_header(stream)
        if item is None:
            return fragments  # truncated: the frames found so far can still be served
        tag, length = item
        if tag == _SEQUENCE_DELIMITER:
            return fragments
        if tag != _ITEM or length == _UNDEFINED_LENGTH:
            raise NotDicomError(f"unexpected tag {tag:08X} among pixel data fragments")
        fragments.append((position, length))
        position += 8 + length


def _frames_from_fragments(
    stream: BinaryIO, fragments: list[tuple[int, int]], frames: int
) -> list[_ItemRange]:
    """Group fragments into frames when no offset table says where frames start."""
    if not fragments:
        return []
    if frames == 1:
        return [_ItemRange(fragments[0][0], _end(fragments[-1]))]
    if len(fragments) <= frames:
        # One fragment per frame (always so for RLE); fewer means frames are missing.
        return [_ItemRange(position, _end((position, size))) for position, size in fragments]
    starts = _split(fragments, lambda i: _starts_frame(stream, fragments[i]))
    if len(starts) == frames:
        return starts
    ends = _split(fragments, lambda i: _ends_frame(stream, fragments[i - 1]))
    return ends if len(ends) == frames else starts


def _split(
    fragments: list[tuple[int, int]], is_new_frame: Callable[[int], bool]
) -> list[_ItemRange]:
    """Split fragments into frames, a new frame beginning at fragment i when is_new_frame(i)."""
    groups: list[_ItemRange] = []
    start = 0
    for i in range(1, len(fragments)):
        if is_new_frame(i):
            groups.append(_ItemRange(fragments[start][0], fragments[i][0]))
            start = i
    groups.append(_ItemRange(fragments[start][0], _end(fragments[-1])))
    return groups


def _end(fragment: tuple[int, int]) -> int:
    return fragment[0] + 8 + fragment[1]


def _starts_frame(stream: BinaryIO, fragment: tuple[int, int]) -> bool:
    stream.seek(fragment[0] + 8)
    head = stream.read(min(fragment[1], 12))
    return head.startswith(_FRAME_STARTS)


def _ends_frame(stream: BinaryIO, fragment: tuple[int, int]) -> bool:
    size = min(fragment[1], _END_WINDOW)
    stream.seek(_end(fragment) - size)
    return _END_OF_IMAGE in stream.read(size)


def _read_items(stream: BinaryIO, frame: _ItemRange) -> Iterator[bytes]:
    stream.seek(frame.start)
    position = frame.start
    while frame.end is None or position < frame.end:
        item = _item_header(stream)
        if item is None:
            raise FrameNotFoundError("the pixel data ends before the frame (truncated object)")
        tag, length = item
        if tag == _SEQUENCE_DELIMITER:
            return
        if tag != _ITEM:
            raise NotDicomError(f"unexpected tag {tag:08X} among pixel data fragments")
        data = stream.read(length)
        if len(data) != length:
            raise FrameNotFoundError("the pixel data ends inside a fragment (truncated object)")
        yield data
        position += 8 + length
