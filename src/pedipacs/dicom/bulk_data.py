"""Bulk data values and decoded frames, for WADO-RS `bulkdata` and uncompressed `frames`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pixel_array
from pydicom.tag import BaseTag

from pedipacs.dicom.frames import pixel_layout, read_frames
from pedipacs.dicom.limits import check_codestream, check_decoded_size
from pedipacs.dicom.transfer_syntax import DECODING_PLUGINS
from pedipacs.errors import BulkDataNotFoundError, FrameNotFoundError, NotRenderableError

PIXEL_DATA = BaseTag(0x7FE00010)


def decoded_frames(path: Path, frame_numbers: Sequence[int]) -> list[bytes]:
    """Frames (from 1) as uncompressed little endian pixels, decoding only those.

    Every number is checked against the object, and the decoded size the header and each
    frame's codestream state against dicom.limits (DecodedSizeTooLargeError), before anything
    is decoded.
    """
    layout = pixel_layout(path)
    for number in frame_numbers:
        layout.frame_index(number)  # FrameNotFoundError
    # All the frames asked for are held at once, so they count together.
    check_decoded_size(layout.decoded_frame_bytes, len(frame_numbers))
    if layout.is_encapsulated:
        for frame in read_frames(path, frame_numbers):
            check_codestream(frame)
    return [_decoded_frame(path, number) for number in frame_numbers]


def _decoded_frame(path: Path, frame_number: int) -> bytes:
    errors: list[str] = []
    for plugin in DECODING_PLUGINS:
        try:
            array = pixel_array(path, index=frame_number - 1, decoding_plugin=plugin)
        except IndexError as error:
            raise FrameNotFoundError(f"frame {frame_number} does not exist: {error}") from error
        except Exception as error:  # the next decoder may cope
            errors.append(f"{plugin}: {error}")
            continue
        return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    raise NotRenderableError(f"no decoder can read frame {frame_number}: {'; '.join(errors)}")


def bulk_data_value(path: Path, tag_path: str) -> bytes:
    """The value at `tag_path` (`7FE00010`, or `00540016/1/00181074` into a sequence item).

    Pixel Data comes back as stored for native syntaxes, and as its frames one after another
    for encapsulated ones.
    """
    dataset = dcmread(path)
    steps = [step for step in tag_path.split("/") if step]
    if not steps or len(steps) % 2 == 0:
        raise BulkDataNotFoundError(f"{tag_path!r} is not a tag path")
    current: Dataset = dataset
    for step, item in zip(steps[0::2], [*steps[1::2], None], strict=True):
        tag = _tag(step, tag_path)
        if tag not in current:
            raise BulkDataNotFoundError(f"the instance has no value at {tag_path}")
        if item is None:
            if (
                tag == PIXEL_DATA
                and current is dataset
                and dataset.file_meta.TransferSyntaxUID.is_compressed
            ):
                return b"".join(
                    read_frames(path, range(1, int(dataset.get("NumberOfFrames") or 1) + 1))
                )
            value = current[tag].value
            if not isinstance(value, bytes):
                raise BulkDataNotFoundError(f"the value at {tag_path} is not bulk data")
            return value
        items = current[tag].value
        index = int(item) - 1 if item.isdigit() else -1
        if not 0 <= index < len(items):
            raise BulkDataNotFoundError(f"the instance has no item {item} at {tag_path}")
        current = items[index]
    raise BulkDataNotFoundError(f"{tag_path!r} is not a tag path")


def _tag(step: str, tag_path: str) -> BaseTag:
    try:
        return BaseTag(int(step, 16))
    except ValueError:
        raise BulkDataNotFoundError(f"{tag_path!r} is not a tag path") from None
