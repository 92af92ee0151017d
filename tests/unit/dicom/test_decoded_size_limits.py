"""Decompression bombs: an object whose header or codestream states a huge image is refused
before anything is decoded, by frame reads, rendering and transcoding alike.

Each hostile object states sizes no machine could allocate (terabytes), so the refusal being
DecodedSizeTooLargeError, and not a MemoryError or a codec error, shows the check ran first.
"""

from __future__ import annotations

import struct
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid

from pedipacs.dicom import limits
from pedipacs.dicom.bulk_data import decoded_frames
from pedipacs.dicom.frames import read_pixel_header
from pedipacs.dicom.header import read_dataset_header
from pedipacs.dicom.rendering import (
    RenderedMediaType,
    RenderOptions,
    render_frame,
    render_instance,
    render_thumbnail,
)
from pedipacs.dicom.transfer_syntax import transcode
from pedipacs.errors import DecodedSizeTooLargeError
from support.files import PYDICOM_TEST_FILES

# One file per kind of decoder: RLE (pydicom), JPEG-LS, JPEG 2000 and JPEG baseline.
COMPRESSED_FILES = [
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
]
CODESTREAM_FILES = COMPRESSED_FILES[1:]
# The largest Rows and Columns (US) can state: 4-8 GiB a frame, over the 1 GiB frame limit.
HUGE = {"Rows": 65535, "Columns": 65535}
# ... and with it a frame count no memory holds: terabytes in all.
HUGE_MULTI_FRAME = {**HUGE, "NumberOfFrames": 10_000}


def rewritten(tmp_path: Path, name: str, **changes: int) -> Path:
    """A copy of a pydicom test file with header attributes rewritten; pixel data untouched."""
    dataset = dcmread(PYDICOM_TEST_FILES / name)
    for keyword, value in changes.items():
        setattr(dataset, keyword, value)
    path = tmp_path / f"hostile-{name}"
    dataset.save_as(path, enforce_file_format=True)
    return path


def with_lying_codestream(tmp_path: Path, name: str) -> Path:
    """A copy whose header is left true but whose codestream states 65535 x 65535 (JPEG, JPEG-LS)
    or 1,000,000 x 1,000,000 (JPEG 2000) pixels."""
    dataset = dcmread(PYDICOM_TEST_FILES / name)
    frame = bytearray(next(generate_frames(dataset.PixelData, number_of_frames=1)))
    if frame.startswith(b"\xff\x4f\xff\x51"):  # J2K SIZ: Xsiz, Ysiz after Lsiz and Rsiz
        frame[8:16] = struct.pack(">LL", 1_000_000, 1_000_000)
    else:  # JPEG or JPEG-LS: the first SOFn / SOF55 segment
        sof = next(
            at
            for at in range(2, len(frame) - 1)
            if frame[at] == 0xFF and frame[at + 1] in (0xC0, 0xC1, 0xC3, 0xF7)
        )
        frame[sof + 5 : sof + 9] = struct.pack(">HH", 65535, 65535)
    dataset.PixelData = encapsulate([bytes(frame)])
    path = tmp_path / f"lying-{name}"
    dataset.save_as(path, enforce_file_format=True)
    return path


def deflated_with_zeros(size: int) -> bytes:
    """A Deflated Explicit VR Little Endian object whose pixel data is `size` zero bytes."""
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    dataset.SOPInstanceUID = generate_uid()
    dataset.StudyInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.PatientID = "BOMB"
    dataset.set_pixel_data(np.zeros((size // 4096, 4096), dtype=np.uint8), "MONOCHROME2", 8)
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("name", COMPRESSED_FILES)
def test_frame_decoding_refuses_a_header_stating_a_huge_frame(tmp_path: Path, name: str) -> None:
    path = rewritten(tmp_path, name, **HUGE)
    with pytest.raises(DecodedSizeTooLargeError, match="decoded frame"):
        decoded_frames(path, [1])


@pytest.mark.parametrize("name", COMPRESSED_FILES)
def test_rendering_refuses_a_header_stating_a_huge_frame(tmp_path: Path, name: str) -> None:
    path = rewritten(tmp_path, name, **HUGE_MULTI_FRAME)
    with pytest.raises(DecodedSizeTooLargeError):
        render_frame(path, 1, RenderOptions())
    with pytest.raises(DecodedSizeTooLargeError):
        render_instance(path, RenderOptions(RenderedMediaType.GIF))
    with pytest.raises(DecodedSizeTooLargeError):
        render_thumbnail(path, RenderOptions())


@pytest.mark.parametrize("name", COMPRESSED_FILES)
def test_transcoding_refuses_a_header_stating_a_huge_object(tmp_path: Path, name: str) -> None:
    dataset = dcmread(rewritten(tmp_path, name, **HUGE_MULTI_FRAME))
    with pytest.raises(DecodedSizeTooLargeError):
        transcode(dataset, ExplicitVRLittleEndian)


def test_frames_each_within_the_limit_are_refused_when_too_many_are_held_at_once(
    tmp_path: Path,
) -> None:
    # 8,192 x 8,192 x 16 bits: 128 MiB a frame, under the frame limit; 100 frames are 12.5 GiB.
    path = rewritten(tmp_path, "MR_small_RLE.dcm", Rows=8192, Columns=8192, NumberOfFrames=100)
    with pytest.raises(DecodedSizeTooLargeError, match="100 decoded frames"):
        transcode(dcmread(path), ExplicitVRLittleEndian)
    with pytest.raises(DecodedSizeTooLargeError, match="40 decoded frames"):
        decoded_frames(path, list(range(1, 41)))


def test_rendering_refuses_a_frame_within_the_decode_limit_but_too_large_to_render(
    tmp_path: Path,
) -> None:
    # 16,384 x 16,384 x 16 bits is 512 MiB decoded, but 2 GiB a copy as 64-bit floats.
    path = rewritten(tmp_path, "MR_small_RLE.dcm", Rows=16384, Columns=16384)
    with pytest.raises(DecodedSizeTooLargeError, match="can be rendered; retrieve it instead"):
        render_frame(path, 1, RenderOptions())


@pytest.mark.parametrize("name", CODESTREAM_FILES)
def test_a_codestream_stating_a_huge_image_is_refused_whatever_the_header_says(
    tmp_path: Path, name: str
) -> None:
    path = with_lying_codestream(tmp_path, name)
    with pytest.raises(DecodedSizeTooLargeError, match="codestream"):
        decoded_frames(path, [1])
    with pytest.raises(DecodedSizeTooLargeError, match="codestream"):
        render_frame(path, 1, RenderOptions())
    with pytest.raises(DecodedSizeTooLargeError, match="codestream"):
        transcode(dcmread(path), ExplicitVRLittleEndian)


@pytest.mark.parametrize("name", CODESTREAM_FILES)
def test_the_codestream_of_an_ordinary_frame_states_what_its_header_states(name: str) -> None:
    dataset = dcmread(PYDICOM_TEST_FILES / name)
    frame = next(generate_frames(dataset.PixelData, number_of_frames=1))
    expected = limits.decoded_frame_bytes(
        dataset.Rows, dataset.Columns, dataset.SamplesPerPixel, dataset.BitsAllocated
    )
    assert limits.codestream_decoded_bytes(frame) == expected


def test_a_viewport_asking_for_a_huge_image_is_refused() -> None:
    huge = RenderOptions(RenderedMediaType.PNG, viewport=(60_000, 60_000))
    with pytest.raises(DecodedSizeTooLargeError, match="smaller viewport"):
        render_frame(PYDICOM_TEST_FILES / "CT_small.dcm", 1, huge)
    # A thumbnail is never scaled up, so the same viewport is harmless there.
    assert render_thumbnail(PYDICOM_TEST_FILES / "CT_small.dcm", huge)


def test_an_animation_too_large_in_all_is_refused() -> None:
    # Each of the 30 frames scaled to 8,000 x 6,000 is a drawable image; all 30 are 1.4 billion
    # pixels.
    path = PYDICOM_TEST_FILES / "examples_ybr_color.dcm"
    options = RenderOptions(RenderedMediaType.GIF, viewport=(8000, 6000))
    with pytest.raises(DecodedSizeTooLargeError, match="animation of 30 images"):
        render_instance(path, options)


def test_a_deflate_bomb_is_refused_before_it_is_inflated() -> None:
    bomb = deflated_with_zeros(64 * 1024**2)  # 64 MiB of zeros deflate ~1000 times
    assert len(bomb) < 1024**2
    with pytest.raises(DecodedSizeTooLargeError, match="inflates past"):
        read_dataset_header(bomb)
    with pytest.raises(DecodedSizeTooLargeError, match="inflates past"):
        read_pixel_header(BytesIO(bomb))


def test_an_ordinary_deflated_object_is_read() -> None:
    data = (PYDICOM_TEST_FILES / "image_dfl.dcm").read_bytes()
    assert read_dataset_header(data).SOPInstanceUID
    small = deflated_with_zeros(4 * 1024**2)  # under the 8 MiB the ratio check leaves free
    assert read_dataset_header(small).PatientID == "BOMB"


def test_pillow_refuses_what_the_frame_limit_refuses() -> None:
    # Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that.
    assert Image.MAX_IMAGE_PIXELS == limits.PILLOW_MAX_IMAGE_PIXELS
    assert 2 * Image.MAX_IMAGE_PIXELS == limits.MAX_DECODED_FRAME_BYTES
