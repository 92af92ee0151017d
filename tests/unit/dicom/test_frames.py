"""Raw frame reads for WADO-RS /frames, checked against pydicom's own view of the pixel data."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames
from pydicom.pixels.utils import pack_bits, pixel_array
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from pedipacs.dicom.frames import PixelLayout, pixel_layout, read_frames, read_pixel_header
from pedipacs.errors import FrameNotFoundError, NotDicomError

NATIVE_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_padded.dcm",
    "ExplVR_BigEnd.dcm",
    "SC_rgb_small_odd.dcm",
    "SC_rgb_small_odd_big_endian.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
    "SC_rgb_jpeg_dcmd.dcm",
    "examples_overlay.dcm",
    "examples_palette.dcm",
    "examples_rgb_color.dcm",
    "rtdose.dcm",
    "rtdose_expb.dcm",
    "liver_1frame.dcm",
    "liver_expb_1frame.dcm",
    "image_dfl.dcm",
]
DECODABLE_ENCAPSULATED_FILES = [
    "693_J2KI.dcm",
    "GDCMJ2K_TextGBR.dcm",
    "J2K_pixelrep_mismatch.dcm",
    "JPEG2000.dcm",
    "JPEGLSNearLossless_08.dcm",
    "JPEGLSNearLossless_16.dcm",
    "JPGExtended.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "SC_jpeg_no_color_transform.dcm",
    "SC_rgb_dcmtk_+eb+cy+np.dcm",
    "SC_rgb_gdcm_KY.dcm",
    "SC_rgb_jls_lossy_line.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "SC_rgb_rle_2frame.dcm",
    "SC_rgb_rle_16bit_2frame.dcm",
    "SC_rgb_rle_32bit_2frame.dcm",
    "SC_rgb_small_odd_jpeg.dcm",
    "examples_jpeg2k.dcm",
    "examples_ybr_color.dcm",
    "rtdose_rle.dcm",
]
# No decoder in the venv reads these, but their frames can still be cut out.
UNDECODABLE_ENCAPSULATED_FILES = ["JPEG-lossy.dcm", "JPEG2000-embedded-sequence-delimiter.dcm"]
NO_PIXEL_DATA_FILES = ["test-SR.dcm", "waveform_ecg.dcm", "rtplan.dcm"]


def pydicom_file(name: str) -> Path:
    found = get_testdata_file(name, download=False)
    assert found is not None, f"pydicom test file {name} is missing"
    return Path(found)


def all_frames(source: Path | io.BytesIO) -> list[bytes]:
    layout = pixel_layout(source)
    return list(read_frames(source, range(1, layout.number_of_frames + 1)))


def secondary_capture(pixels: NDArray[np.generic], photometric: str, bits_stored: int) -> Dataset:
    """A multi-frame Secondary Capture holding `pixels` (frames, rows, columns[, samples])."""
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7.3"  # Multi-frame Grayscale Word SC
    dataset.SOPInstanceUID = generate_uid()
    dataset.set_pixel_data(pixels, photometric, bits_stored)
    return dataset


def write(dataset: Dataset, path: Path) -> Path:
    dataset.save_as(path, enforce_file_format=True)
    return path


def synthetic_frames(count: int, rows: int = 32, columns: int = 32) -> NDArray[np.uint16]:
    """Distinct 12-bit frames: each one a different gradient."""
    grid = np.add.outer(np.arange(rows), np.arange(columns)).astype(np.uint16)
    return np.stack([(grid * (k + 3) + 97 * k) % 4096 for k in range(count)]).astype(np.uint16)


# --- Native pixel data ------------------------------------------------------------------


@pytest.mark.parametrize("name", NATIVE_FILES)
def test_native_frames_concatenate_to_the_stored_pixel_data(name: str) -> None:
    path = pydicom_file(name)
    layout = pixel_layout(path)
    frames = all_frames(path)
    stored = pydicom.dcmread(path)[layout.pixel_data_keyword].value
    assert not layout.is_encapsulated
    assert {len(frame) for frame in frames} == {layout.bits_per_frame // 8}
    joined = b"".join(frames)
    assert joined == stored[: len(joined)]
    assert len(stored) - len(joined) <= 128  # only padding is left over


@pytest.mark.parametrize("name", ["rtdose.dcm", "CT_small.dcm", "SC_rgb_small_odd.dcm"])
def test_native_frame_decodes_to_pydicoms_frame(name: str) -> None:
    path = pydicom_file(name)
    layout = pixel_layout(path)
    dtype = pixel_array(path, index=0).dtype
    for number, frame in enumerate(all_frames(path), start=1):
        expected = pixel_array(path, index=number - 1)
        assert np.array_equal(np.frombuffer(frame, dtype).reshape(expected.shape), expected)
    assert layout.number_of_frames == (15 if name == "rtdose.dcm" else 1)


def test_one_bit_frames_off_byte_boundaries_are_repacked_from_bit_zero(tmp_path: Path) -> None:
    # 3x5 = 15 bits per frame, so frames 2.. start inside a byte.
    masks = (np.arange(5 * 3 * 5).reshape(5, 3, 5) % np.arange(2, 7)[:, None, None] == 0).astype(
        np.uint8
    )
    dataset = secondary_capture(masks, "MONOCHROME2", 1)
    dataset.BitsAllocated = 1
    dataset.PixelData = pack_bits(masks)
    path = write(dataset, tmp_path / "mask.dcm")
    frames = all_frames(path)
    # pydicom 3.0.2 cannot decode such a frame alone (index > 0 fails to reshape): decode all.
    decoded = pixel_array(path)
    for index, frame in enumerate(frames):
        bits = np.unpackbits(np.frombuffer(frame, np.uint8), bitorder="little")
        assert len(frame) == 2
        assert np.array_equal(bits[:15], masks[index].ravel())
        assert not bits[15:].any()
        assert np.array_equal(bits[:15].reshape(3, 5), decoded[index])


def test_float_pixel_data_frames_are_byte_ranges(tmp_path: Path) -> None:
    values = np.linspace(-1.5, 2.5, 3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    dataset = secondary_capture(np.zeros((3, 4, 5), np.uint16), "MONOCHROME2", 16)
    del dataset.PixelData
    for keyword in ("BitsStored", "HighBit", "PixelRepresentation"):
        delattr(dataset, keyword)
    dataset.BitsAllocated = 32
    dataset.FloatPixelData = values.tobytes()
    path = write(dataset, tmp_path / "float.dcm")
    layout = pixel_layout(path)
    frames = all_frames(path)
    assert layout.pixel_data_keyword == "FloatPixelData"
    assert [np.frombuffer(frame, np.float32).reshape(4, 5).tolist() for frame in frames] == [
        frame.tolist() for frame in values
    ]


# --- Encapsulated pixel data --------------------------------------------------------------


@pytest.mark.parametrize("name", DECODABLE_ENCAPSULATED_FILES + UNDECODABLE_ENCAPSULATED_FILES)
def test_encapsulated_frames_equal_pydicoms_frames(name: str) -> None:
    path = pydicom_file(name)
    layout = pixel_layout(path)
    stored = pydicom.dcmread(path).PixelData
    expected = list(generate_frames(stored, number_of_frames=layout.number_of_frames))
    assert layout.is_encapsulated
    assert all_frames(path) == expected


@pytest.mark.parametrize("name", DECODABLE_ENCAPSULATED_FILES)
def test_encapsulated_frame_decodes_to_pydicoms_frame(name: str) -> None:
    path = pydicom_file(name)
    dataset = pydicom.dcmread(path)
    frames = all_frames(path)
    for index, frame in enumerate(frames):
        dataset.PixelData = encapsulate([frame])
        dataset.NumberOfFrames = 1
        assert np.array_equal(pixel_array(dataset), pixel_array(path, index=index))


def compressed(tmp_path: Path, syntax: UID, count: int) -> tuple[Dataset, list[bytes]]:
    """A multi-frame object compressed in `syntax`, and its frames' codestreams."""
    dataset = secondary_capture(synthetic_frames(count), "MONOCHROME2", 12)
    dataset.compress(syntax)
    return dataset, list(generate_frames(dataset.PixelData, number_of_frames=count))


def even(frame: bytes) -> bytes:
    return frame + b"\x00" * (len(frame) % 2)  # fragments are padded to an even length


@pytest.mark.parametrize("syntax", [JPEGLSLossless, JPEG2000Lossless])
@pytest.mark.parametrize(
    ("fragments_per_frame", "has_bot"), [(1, True), (1, False), (3, True), (3, False)]
)
def test_fragmented_frames_are_found_with_or_without_basic_offset_table(
    tmp_path: Path, syntax: UID, fragments_per_frame: int, has_bot: bool
) -> None:
    dataset, codestreams = compressed(tmp_path, syntax, 7)
    dataset.PixelData = encapsulate(codestreams, fragments_per_frame, has_bot=has_bot)
    path = write(dataset, tmp_path / "fragmented.dcm")
    frames = all_frames(path)
    assert frames == [even(codestream) for codestream in codestreams]
    expected = synthetic_frames(7)
    for index, frame in enumerate(frames):
        dataset.PixelData = encapsulate([frame])
        dataset.NumberOfFrames = 1
        assert np.array_equal(pixel_array(dataset), expected[index])


def test_frames_are_found_through_the_extended_offset_table(tmp_path: Path) -> None:
    dataset, codestreams = compressed(tmp_path, JPEGLSLossless, 5)
    dataset.PixelData, offsets, lengths = encapsulate_extended(codestreams)
    dataset.ExtendedOffsetTable = offsets
    dataset.ExtendedOffsetTableLengths = lengths
    path = write(dataset, tmp_path / "extended.dcm")
    assert list(read_frames(path, [5, 1, 3])) == [even(codestreams[i]) for i in (4, 0, 2)]


def test_basic_offset_table_with_too_few_entries_falls_back_to_markers(tmp_path: Path) -> None:
    dataset, codestreams = compressed(tmp_path, JPEG2000Lossless, 4)
    fragmented = encapsulate(codestreams, 2, has_bot=False)
    # A Basic Offset Table listing only the first frame: wrong, so it must be ignored.
    table = b"\xfe\xff\x00\xe0\x04\x00\x00\x00\x00\x00\x00\x00"
    dataset.PixelData = table + fragmented[8:]
    path = write(dataset, tmp_path / "short_table.dcm")
    assert all_frames(path) == [even(codestream) for codestream in codestreams]


def test_rle_frames_are_one_fragment_each(tmp_path: Path) -> None:
    dataset, codestreams = compressed(tmp_path, RLELossless, 3)
    dataset.PixelData = encapsulate(codestreams, has_bot=False)
    path = write(dataset, tmp_path / "rle.dcm")
    assert all_frames(path) == codestreams


# --- Reading little ---------------------------------------------------------------------


class CountingReader(io.BytesIO):
    """A file object that counts the bytes handed out."""

    bytes_read = 0

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, JPEGLSLossless])
def test_one_frame_of_a_large_multi_frame_object_reads_little_of_it(
    tmp_path: Path, syntax: UID
) -> None:
    dataset = secondary_capture(synthetic_frames(120, 64, 64), "MONOCHROME2", 12)
    if syntax != ExplicitVRLittleEndian:
        # Without an offset table every fragment header is visited, but no fragment is read.
        dataset.compress(syntax, encoding_plugin="pyjpegls")
        dataset.PixelData = encapsulate(list(generate_frames(dataset.PixelData)), has_bot=False)
    path = write(dataset, tmp_path / "large.dcm")
    stream = CountingReader(path.read_bytes())
    frame = next(read_frames(stream, [77]))
    assert frame == all_frames(path)[76]
    size = path.stat().st_size
    assert stream.bytes_read < 2000 + 120 * 30 + len(frame), (stream.bytes_read, size)
    assert stream.bytes_read < size / 10


# --- Refusals and API details -------------------------------------------------------------


@pytest.mark.parametrize("number", [0, -1, 16, 1000])
def test_frame_number_outside_the_object_is_refused_before_reading(number: int) -> None:
    with pytest.raises(FrameNotFoundError, match=r"outside 1\.\.15"):
        read_frames(pydicom_file("rtdose.dcm"), [1, number])


@pytest.mark.parametrize("name", NO_PIXEL_DATA_FILES)
def test_object_without_pixel_data_has_no_frames(name: str) -> None:
    path = pydicom_file(name)
    with pytest.raises(FrameNotFoundError, match="no pixel data"):
        read_frames(path, [1])
    with pytest.raises(FrameNotFoundError):
        pixel_layout(path)
    assert read_pixel_header(path)[1] is None


def test_truncated_pixel_data_is_reported_as_a_missing_frame() -> None:
    with pytest.raises(FrameNotFoundError, match="truncated"):
        list(read_frames(pydicom_file("MR_truncated.dcm"), [1]))


def test_truncated_encapsulated_object_still_serves_its_intact_frames(tmp_path: Path) -> None:
    dataset, codestreams = compressed(tmp_path, JPEGLSLossless, 7)
    dataset.PixelData = encapsulate(codestreams, has_bot=False)
    whole = write(dataset, tmp_path / "whole.dcm").read_bytes()
    path = tmp_path / "truncated.dcm"
    path.write_bytes(whole[: -len(codestreams[-1]) // 2])
    assert list(read_frames(path, [1, 6])) == [even(codestreams[0]), even(codestreams[5])]
    with pytest.raises(FrameNotFoundError, match="truncated"):
        list(read_frames(path, [7]))


def test_object_without_file_meta_is_not_dicom() -> None:
    with pytest.raises(NotDicomError):
        pixel_layout(pydicom_file("no_meta.dcm"))


def test_frames_come_in_the_order_asked_with_repeats() -> None:
    path = pydicom_file("examples_ybr_color.dcm")
    frames = all_frames(path)
    assert list(read_frames(path, [30, 2, 2, 1])) == [frames[29], frames[1], frames[1], frames[0]]


def test_file_object_and_path_give_the_same_frames() -> None:
    path = pydicom_file("rtdose_rle.dcm")
    with path.open("rb") as stream:
        from_stream = list(read_frames(stream, [3, 15]))
    assert from_stream == list(read_frames(path, [3, 15]))


def test_pixel_layout_describes_a_multi_frame_colour_jpeg() -> None:
    assert pixel_layout(pydicom_file("examples_ybr_color.dcm")) == PixelLayout(
        transfer_syntax_uid="1.2.840.10008.1.2.4.50",
        number_of_frames=30,
        rows=240,
        columns=320,
        samples_per_pixel=3,
        bits_allocated=8,
        is_encapsulated=True,
        photometric_interpretation="YBR_FULL_422",
        pixel_data_keyword="PixelData",
    )


def test_explicit_syntax_written_as_implicit_vr_still_finds_frames() -> None:
    path = pydicom_file("SC_rgb_jpeg.dcm")  # says Explicit VR, is encoded Implicit VR
    with pytest.warns(UserWarning, match="Expected explicit VR"):
        frames = all_frames(path)
        stored = pydicom.dcmread(path).PixelData
    assert frames == list(generate_frames(stored, number_of_frames=1))
