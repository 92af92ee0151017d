"""Rendered frames and thumbnails for browsers (WADO-RS /rendered, /thumbnail)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import pixel_array
from pydicom.uid import generate_uid

from pedipacs.demo.generator import generate_demo_data
from pedipacs.dicom.rendering import (
    RenderedMediaType,
    RenderOptions,
    VOILUTFunction,
    render_frame,
    render_instance,
    render_thumbnail,
)
from pedipacs.errors import FrameNotFoundError, InvalidInput, NotRenderableError

RENDERABLE_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "JPEG2000.dcm",
    "JPGExtended.dcm",
    "693_J2KI.dcm",
    "ExplVR_BigEnd.dcm",
    "SC_rgb_small_odd_big_endian.dcm",
    "SC_rgb_dcmtk_+eb+cy+np.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "SC_rgb_rle_16bit.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
    "examples_jpeg2k.dcm",
    "examples_palette.dcm",
    "examples_ybr_color.dcm",
    "liver_1frame.dcm",
    "image_dfl.dcm",
    "rtdose.dcm",
    "rtdose_expb.dcm",
]
PIL_FORMATS = {
    RenderedMediaType.JPEG: "JPEG",
    RenderedMediaType.PNG: "PNG",
    RenderedMediaType.GIF: "GIF",
}


def pydicom_file(name: str) -> Path:
    found = get_testdata_file(name, download=False)
    assert found is not None, f"pydicom test file {name} is missing"
    return Path(found)


def format_and_size(data: bytes) -> tuple[str | None, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # decodes, so broken output fails here
        return image.format, image.size


def grey(data: bytes) -> NDArray[np.int64]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "L"
        return np.asarray(image, dtype=np.int64)


def png(source: Path | BinaryIO, frame: int = 1, **options: Any) -> bytes:
    return render_frame(source, frame, RenderOptions(RenderedMediaType.PNG, **options))


def greyscale_file(
    path: Path, frames: NDArray[np.uint16], photometric: str = "MONOCHROME2", **attributes: object
) -> Path:
    """A 16-bit grey-scale multi-frame Secondary Capture with extra attributes, written to path."""
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7.3"
    dataset.SOPInstanceUID = generate_uid()
    dataset.set_pixel_data(frames, photometric, 16)
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    dataset.save_as(path, enforce_file_format=True)
    return path


def ramp(frames: int = 1, rows: int = 4, columns: int = 250) -> NDArray[np.uint16]:
    """Frames whose columns hold 0, 4, 8, ... and whose k-th frame adds 1000 * k."""
    row = np.arange(columns, dtype=np.uint16) * 4
    return np.stack([np.tile(row + 1000 * k, (rows, 1)) for k in range(frames)]).astype(np.uint16)


@pytest.fixture(scope="module")
def ultrasound_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo generator's neonatal cine clip: 20 frames, Frame Time 40 ms."""
    summary = generate_demo_data(tmp_path_factory.mktemp("demo"), patients=1, ct_slices=1)
    (clip,) = [
        path
        for path in summary.files
        if pydicom.dcmread(path, stop_before_pixels=True).Modality == "US"
    ]
    return clip


# --- Every image renders, in every media type --------------------------------------------


@pytest.mark.parametrize("media_type", list(RenderedMediaType))
@pytest.mark.parametrize("name", RENDERABLE_FILES)
def test_rendered_frame_decodes_at_full_size(name: str, media_type: RenderedMediaType) -> None:
    path = pydicom_file(name)
    header = pydicom.dcmread(path, stop_before_pixels=True)
    rendered = render_frame(path, 1, RenderOptions(media_type))
    assert format_and_size(rendered) == (PIL_FORMATS[media_type], (header.Columns, header.Rows))


@pytest.mark.parametrize(
    ("name", "viewport", "size"),
    [
        ("JPEG2000.dcm", (100, 100), (25, 100)),  # 256x1024: height limits
        ("examples_jpeg2k.dcm", (100, 100), (100, 75)),  # 640x480: width limits
        ("ExplVR_BigEnd.dcm", (200, 100), (133, 100)),  # 80x60: scaled up to fit
        ("CT_small.dcm", (128, 128), (128, 128)),
    ],
)
def test_rendered_frame_fits_the_viewport_keeping_aspect_ratio(
    name: str, viewport: tuple[int, int], size: tuple[int, int]
) -> None:
    options = RenderOptions(RenderedMediaType.JPEG, viewport=viewport)
    assert format_and_size(render_frame(pydicom_file(name), 1, options)) == ("JPEG", size)


# --- Grey-scale: Modality LUT, VOI window, MONOCHROME1 ----------------------------------------


def test_requested_window_follows_the_linear_voi_function(tmp_path: Path) -> None:
    # Stored 0..996 with intercept -500: modality values -500..496.
    path = greyscale_file(tmp_path / "ramp.dcm", ramp(), RescaleSlope=1, RescaleIntercept=-500)
    row = grey(png(path, window_center=0.5, window_width=101.0))[0]
    values = np.arange(250) * 4 - 500
    expected = np.clip(((values - 0.0) / 100 + 0.5) * 255, 0, 255)
    assert np.abs(row - expected).max() <= 1
    assert row[values <= -51].max() == 0
    assert row[values > 50].min() == 255


def test_rescale_slope_and_intercept_apply_before_the_window(tmp_path: Path) -> None:
    plain = greyscale_file(tmp_path / "plain.dcm", ramp())
    scaled = greyscale_file(tmp_path / "scaled.dcm", ramp(), RescaleSlope=2, RescaleIntercept=-1000)
    exact = VOILUTFunction.LINEAR_EXACT
    # Stored s becomes 2s - 1000 in `scaled`: the same picture as `plain` windowed at 500/400.
    assert np.array_equal(
        grey(png(scaled, window_center=0.0, window_width=800.0, voi_lut_function=exact)),
        grey(png(plain, window_center=500.0, window_width=400.0, voi_lut_function=exact)),
    )


def test_window_of_the_object_is_used_when_none_is_requested(tmp_path: Path) -> None:
    path = greyscale_file(tmp_path / "windowed.dcm", ramp(), WindowCenter=300, WindowWidth=200)
    assert np.array_equal(grey(png(path)), grey(png(path, window_center=300.0, window_width=200.0)))


def test_requested_window_changes_the_rendering() -> None:
    path = pydicom_file("CT_small.dcm")
    default, narrow = grey(png(path)), grey(png(path, window_center=1100.0, window_width=50.0))
    assert not np.array_equal(default, narrow)
    assert np.isin(narrow, [0, 255]).mean() > 0.8  # a narrow window is nearly black and white


def test_sigmoid_voi_function_maps_the_center_to_mid_grey(tmp_path: Path) -> None:
    path = greyscale_file(
        tmp_path / "sigmoid.dcm",
        ramp(),
        WindowCenter=500,
        WindowWidth=400,
        VOILUTFunction="SIGMOID",
    )
    row = grey(png(path))[0]
    assert row[125] == 128  # stored 500: 1 / (1 + e^0)
    assert 0 < row[0] < 10 and 245 < row[-1] < 255  # asymptotic, never clipped
    exact = grey(
        png(
            path,
            window_center=500.0,
            window_width=400.0,
            voi_lut_function=VOILUTFunction.LINEAR_EXACT,
        )
    )[0]
    assert exact[0] == 0 and exact[125] == 128 and exact[-1] == 255


def test_without_window_the_frame_is_stretched_from_min_to_max(tmp_path: Path) -> None:
    path = greyscale_file(tmp_path / "ramp.dcm", ramp() + 1000)
    row = grey(png(path))[0]
    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row) >= 0)


def test_monochrome1_is_rendered_inverted(tmp_path: Path) -> None:
    frames = ramp()
    normal = greyscale_file(tmp_path / "m2.dcm", frames, "MONOCHROME2")
    inverted = greyscale_file(tmp_path / "m1.dcm", frames, "MONOCHROME1")
    assert np.abs(grey(png(inverted)) - (255 - grey(png(normal)))).max() <= 1


def test_per_frame_functional_groups_give_each_frame_its_window(tmp_path: Path) -> None:
    def voi(center: int, width: int) -> Dataset:
        item, group = Dataset(), Dataset()
        item.WindowCenter, item.WindowWidth = center, width
        group.FrameVOILUTSequence = [item]
        return group

    frames = np.stack([ramp()[0], ramp()[0]])
    path = greyscale_file(
        tmp_path / "enhanced.dcm",
        frames,
        PerFrameFunctionalGroupsSequence=[voi(200, 100), voi(800, 100)],
    )
    assert np.array_equal(
        grey(png(path, 1)), grey(png(path, 1, window_center=200.0, window_width=100.0))
    )
    assert np.array_equal(
        grey(png(path, 2)), grey(png(path, 2, window_center=800.0, window_width=100.0))
    )


# --- Colour -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["examples_rgb_color.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm", "examples_jpeg2k.dcm"]
)
def test_colour_frame_is_rendered_as_decoded_rgb(name: str) -> None:
    path = pydicom_file(name)
    with Image.open(io.BytesIO(png(path))) as image:
        assert image.mode == "RGB"
        rendered = np.asarray(image, dtype=np.int64)
    # JPEG decoders round the YCbCr to RGB conversion differently, by up to 2.
    assert np.abs(rendered - pixel_array(path, index=0)).max() <= 2


def test_palette_colour_goes_through_its_lookup_table() -> None:
    path = pydicom_file("examples_palette.dcm")
    dataset = pydicom.dcmread(path)
    expected = np.rint(apply_color_lut(dataset.pixel_array, dataset) / 257).astype(np.uint8)
    with Image.open(io.BytesIO(png(path))) as image:
        assert np.array_equal(np.asarray(image), expected)


def test_sixteen_bit_rgb_is_scaled_to_eight_bits() -> None:
    path = pydicom_file("SC_rgb_rle_16bit.dcm")
    expected = np.rint(pixel_array(path).astype(np.float64) / 257).astype(np.uint8)
    with Image.open(io.BytesIO(png(path))) as image:
        assert np.array_equal(np.asarray(image), expected)


# --- Multi-frame: animated GIF, first frame, thumbnails -------------------------------------


def test_multi_frame_as_gif_is_an_animation_of_every_frame(ultrasound_clip: Path) -> None:
    header = pydicom.dcmread(ultrasound_clip, stop_before_pixels=True)
    data = render_instance(
        ultrasound_clip, RenderOptions(RenderedMediaType.GIF, viewport=(160, 160))
    )
    with Image.open(io.BytesIO(data)) as image:
        assert image.n_frames == header.NumberOfFrames == 20
        assert image.size == (160, 120)
        assert image.info["duration"] == 40  # Frame Time
        image.seek(7)
        assert image.size == (160, 120)


def test_gif_frame_duration_comes_from_cine_rate_without_frame_time(tmp_path: Path) -> None:
    path = greyscale_file(tmp_path / "cine.dcm", ramp(3), CineRate=20)
    # A fixed window keeps the frames different: Pillow merges identical consecutive frames.
    options = RenderOptions(RenderedMediaType.GIF, window_center=1500.0, window_width=3000.0)
    with Image.open(io.BytesIO(render_instance(path, options))) as image:
        assert image.n_frames == 3
        assert image.info["duration"] == 50


@pytest.mark.parametrize("media_type", [RenderedMediaType.JPEG, RenderedMediaType.PNG])
def test_multi_frame_as_still_image_is_its_first_frame(media_type: RenderedMediaType) -> None:
    path = pydicom_file("rtdose.dcm")
    options = RenderOptions(media_type)
    assert render_instance(path, options) == render_frame(path, 1, options)


def test_single_frame_instance_is_that_frame() -> None:
    path = pydicom_file("CT_small.dcm")
    options = RenderOptions(RenderedMediaType.GIF)
    assert render_instance(path, options) == render_frame(path, 1, options)


def test_thumbnail_is_the_middle_frame_within_128_pixels(tmp_path: Path) -> None:
    # Five 256x512 frames, each constant: frame k holds 100 * k.
    frames = np.stack([np.full((256, 512), 100 * k, np.uint16) for k in range(5)])
    path = greyscale_file(tmp_path / "five.dcm", frames)
    options = RenderOptions(
        RenderedMediaType.PNG,
        window_center=250.0,
        window_width=500.0,
        voi_lut_function=VOILUTFunction.LINEAR_EXACT,
    )
    pixels = grey(render_thumbnail(path, options))
    assert pixels.shape == (64, 128)
    assert np.all(pixels == 102)  # frame 3 of 5 holds 200: (200 - 250) / 500 + 0.5 = 0.4


def test_thumbnail_of_a_small_image_is_not_scaled_up() -> None:
    data = render_thumbnail(pydicom_file("rtdose.dcm"), RenderOptions(RenderedMediaType.JPEG))
    assert format_and_size(data) == ("JPEG", (10, 10))


def test_thumbnail_honours_a_requested_viewport() -> None:
    options = RenderOptions(RenderedMediaType.GIF, viewport=(50, 50))
    rendered = render_thumbnail(pydicom_file("JPEG2000.dcm"), options)
    assert format_and_size(rendered) == ("GIF", (12, 50))


# --- Refusals and details -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["test-SR.dcm", "waveform_ecg.dcm", "rtplan.dcm"])
def test_object_without_pixel_data_is_not_renderable(name: str) -> None:
    options = RenderOptions(RenderedMediaType.JPEG)
    for render in (render_instance, render_thumbnail):
        with pytest.raises(NotRenderableError):
            render(pydicom_file(name), options)
    with pytest.raises(NotRenderableError):
        render_frame(pydicom_file(name), 1, options)


@pytest.mark.parametrize("number", [0, 16])
def test_frame_outside_the_object_is_not_found(number: int) -> None:
    with pytest.raises(FrameNotFoundError):
        render_frame(pydicom_file("rtdose.dcm"), number, RenderOptions())


def test_frame_no_decoder_can_read_is_not_renderable() -> None:
    # 12-bit lossy JPEG that none of pylibjpeg, GDCM or Pillow decodes.
    with pytest.raises(NotRenderableError, match="no decoder"):
        render_frame(pydicom_file("JPEG-lossy.dcm"), 1, RenderOptions())


@pytest.mark.parametrize(
    "options",
    [
        {"window_center": 40.0},
        {"window_center": 40.0, "window_width": 0.0},
        {"quality": 0},
        {"quality": 101},
        {"viewport": (0, 100)},
    ],
)
def test_invalid_render_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        RenderOptions(RenderedMediaType.JPEG, **options)


def test_jpeg_quality_trades_size_for_fidelity() -> None:
    path = pydicom_file("examples_jpeg2k.dcm")
    low = render_frame(path, 1, RenderOptions(RenderedMediaType.JPEG, quality=10))
    high = render_frame(path, 1, RenderOptions(RenderedMediaType.JPEG, quality=95))
    assert len(low) < len(high) / 2


def test_file_object_renders_like_its_path() -> None:
    path = pydicom_file("MR_small_RLE.dcm")
    with path.open("rb") as stream:
        from_stream = render_frame(stream, 1, RenderOptions(RenderedMediaType.PNG))
    assert from_stream == png(path)


def test_one_bit_segmentation_renders_black_and_white() -> None:
    pixels = grey(png(pydicom_file("liver_1frame.dcm")))
    assert set(np.unique(pixels).tolist()) == {0, 255}


def test_float_pixel_data_is_stretched_like_grey_scale(tmp_path: Path) -> None:
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.30"  # Parametric Map
    dataset.SOPInstanceUID = generate_uid()
    dataset.set_pixel_data(np.zeros((2, 5), np.uint16), "MONOCHROME2", 16)
    del dataset.PixelData
    for keyword in ("BitsStored", "HighBit", "PixelRepresentation"):
        delattr(dataset, keyword)
    dataset.BitsAllocated = 32
    dataset.FloatPixelData = np.linspace(-1.0, 1.0, 10, dtype=np.float32).tobytes()
    path = tmp_path / "float.dcm"
    dataset.save_as(path, enforce_file_format=True)
    values = grey(png(path)).ravel()  # -1.0 .. 1.0 over two rows
    assert values[0] == 0 and values[-1] == 255 and np.all(np.diff(values) > 0)
