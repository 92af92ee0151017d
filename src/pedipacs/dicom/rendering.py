"""Render frames to JPEG, PNG or GIF for browsers without a DICOM codec (WADO-RS `/rendered`).

Only the frames asked for are read and decoded. Grey-scale images go through the Modality LUT
and a VOI window (PS3.3 C.11.2.1.2), MONOCHROME1 is inverted; colour images are shown as RGB
(YBR converted by the decoder, PALETTE COLOR through its lookup table). Output is 8-bit.

Sizes are checked before anything is decoded (dicom.limits): the frame the header states, the
frame each codestream states, and the image the viewport asks for; DecodedSizeTooLargeError
when one is too large.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from io import BytesIO
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID

from pedipacs.dicom.frames import (
    DicomSource,
    PixelLayout,
    open_dicom,
    read_frames,
    read_pixel_header,
)
from pedipacs.dicom.limits import (
    MAX_ANIMATED_PIXELS,
    MAX_RENDERED_FRAME_SAMPLES,
    MAX_RENDERED_PIXELS,
    check_codestream,
    check_decoded_size,
)
from pedipacs.dicom.transfer_syntax import DECODING_PLUGINS
from pedipacs.errors import DecodedSizeTooLargeError, InvalidInput, NotRenderableError

FloatArray = NDArray[np.float64]

THUMBNAIL_VIEWPORT = (128, 128)
# Without Frame Time or a frame rate, a cine clip plays at 10 frames per second.
DEFAULT_FRAME_DURATION_MS = 100
# The Image Pixel attributes a decoder needs to decode one frame on its own.
_IMAGE_PIXEL_KEYWORDS = (
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
)


class RenderedMediaType(StrEnum):
    """The media types PS3.18 8.7.4 lets a rendered resource be returned in."""

    JPEG = "image/jpeg"
    PNG = "image/png"
    GIF = "image/gif"


class VOILUTFunction(StrEnum):
    """Defined terms of (0028,1056) VOI LUT Function."""

    LINEAR = "LINEAR"
    LINEAR_EXACT = "LINEAR_EXACT"
    SIGMOID = "SIGMOID"


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """What the client asked for: PS3.18 8.3.5.1.3 query parameters, already parsed.

    A window is in the units after the Modality LUT (e.g. Hounsfield units) and is applied
    with `voi_lut_function`; without one, the object's own window and function are used. The
    viewport is (width, height) in pixels: the image is scaled, up or down, to fit inside it
    keeping its aspect ratio. Quality applies to JPEG only.
    """

    media_type: RenderedMediaType = RenderedMediaType.JPEG
    window_center: float | None = None
    window_width: float | None = None
    voi_lut_function: VOILUTFunction = VOILUTFunction.LINEAR
    viewport: tuple[int, int] | None = None
    quality: int = 90

    def __post_init__(self) -> None:
        if (self.window_center is None) != (self.window_width is None):
            raise InvalidInput("a window needs both a center and a width")
        if self.window_width is not None and self.window_width <= 0:
            raise InvalidInput(f"window width {self.window_width} is not positive")
        if self.viewport is not None and min(self.viewport) < 1:
            raise InvalidInput(f"viewport {self.viewport} is not at least 1x1")
        if not 1 <= self.quality <= 100:
            raise InvalidInput(f"quality {self.quality} is outside 1..100")


def render_frame(source: DicomSource, frame_number: int, options: RenderOptions) -> bytes:
    """One frame (1-based) as an image of `options.media_type`.

    NotRenderableError for an object without pixel data or that no decoder can read;
    FrameNotFoundError for a frame number outside 1..NumberOfFrames.
    """
    header, layout = _image_header(source)
    index = layout.frame_index(frame_number)
    _check_render_size(layout, options.viewport)
    return _render_still(source, header, layout, index, options)


def render_instance(source: DicomSource, options: RenderOptions) -> bytes:
    """The whole object: a multi-frame one as an animated GIF when GIF is asked for.

    The animation plays at the object's Frame Time, Cine Rate or Recommended Display Frame
    Rate; a multi-frame object asked for as JPEG or PNG gives its first frame.
    """
    header, layout = _image_header(source)
    if layout.number_of_frames == 1 or options.media_type != RenderedMediaType.GIF:
        _check_render_size(layout, options.viewport)
        return _render_still(source, header, layout, 0, options)
    indices = list(range(layout.number_of_frames))
    _check_render_size(layout, options.viewport, frames=len(indices))
    images = [
        _fit(_display_image(pixels, header, layout, index, options), options.viewport)
        for index, pixels in zip(
            indices, _decoded_frames(source, header, layout, indices), strict=True
        )
    ]
    return _encode(images, options, [_frame_duration_ms(header)] * len(images))


def render_thumbnail(source: DicomSource, options: RenderOptions) -> bytes:
    """A small image (128x128 unless a viewport is given), of the middle frame if several.

    Unlike a rendered frame, a thumbnail is never scaled up.
    """
    header, layout = _image_header(source)
    index = layout.number_of_frames // 2
    _check_render_size(layout, None)  # a thumbnail is never larger than the frame
    pixels = next(_decoded_frames(source, header, layout, [index]))
    image = _display_image(pixels, header, layout, index, options)
    image.thumbnail(options.viewport or THUMBNAIL_VIEWPORT, Image.Resampling.LANCZOS)
    return _encode([image], options, [])


def _render_still(
    source: DicomSource, header: Dataset, layout: PixelLayout, index: int, options: RenderOptions
) -> bytes:
    pixels = next(_decoded_frames(source, header, layout, [index]))
    image = _fit(_display_image(pixels, header, layout, index, options), options.viewport)
    return _encode([image], options, [])


def _image_header(source: DicomSource) -> tuple[Dataset, PixelLayout]:
    header, layout = read_pixel_header(source)
    if layout is None:
        raise NotRenderableError("the object has no pixel data to render")
    if layout.samples_per_pixel not in (1, 3):
        raise NotRenderableError(f"{layout.samples_per_pixel} samples per pixel")
    return header, layout


def _check_render_size(
    layout: PixelLayout, viewport: tuple[int, int] | None, frames: int = 1
) -> None:
    """Refuse, before decoding, a frame too large to decode or render, or an output image (or
    animation of `frames` images) too large to draw."""
    check_decoded_size(layout.decoded_frame_bytes)
    rows, columns = abs(layout.rows), abs(layout.columns)
    samples = rows * columns * layout.samples_per_pixel
    if samples > MAX_RENDERED_FRAME_SAMPLES:
        raise DecodedSizeTooLargeError(
            f"a frame of {columns} x {rows} x {layout.samples_per_pixel} samples is more than "
            f"the {MAX_RENDERED_FRAME_SAMPLES} that can be rendered; retrieve it instead"
        )
    width, height = _fitted_size((columns, rows), viewport)
    _check_output_size(width, height)
    if width * height * frames > MAX_ANIMATED_PIXELS:
        raise DecodedSizeTooLargeError(
            f"an animation of {frames} images of {width} x {height} pixels is more than the "
            f"{MAX_ANIMATED_PIXELS} pixels that can be rendered; ask for a smaller viewport"
        )


def _check_output_size(width: int, height: int) -> None:
    if width * height > MAX_RENDERED_PIXELS:
        raise DecodedSizeTooLargeError(
            f"a rendered image of {width} x {height} pixels is more than the "
            f"{MAX_RENDERED_PIXELS} pixels that can be rendered; ask for a smaller viewport"
        )


# --- Decoding -------------------------------------------------------------------------


def _decoded_frames(
    source: DicomSource, header: Dataset, layout: PixelLayout, indices: Sequence[int]
) -> Iterator[NDArray[Any]]:
    """Decode the frames at `indices`, reading only those frames."""
    if not UID(layout.transfer_syntax_uid).is_little_endian:
        # Big endian 8-bit data stored as OW is byte-swapped across frame boundaries:
        # pydicom's own reader knows how to cut such frames out.
        with open_dicom(source) as stream:
            for index in indices:
                yield pixel_array(stream, index=index)
        return
    plugins = list(DECODING_PLUGINS) if layout.is_encapsulated else [""]
    for frame in read_frames(source, [index + 1 for index in indices]):
        if layout.is_encapsulated:
            check_codestream(frame)  # the codec trusts the codestream, not the header
        pixels, plugin = _decode(_single_frame_dataset(header, layout, frame), plugins)
        plugins = [plugin, *(other for other in plugins if other != plugin)]
        yield pixels


def _single_frame_dataset(header: Dataset, layout: PixelLayout, frame: bytes) -> Dataset:
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = UID(layout.transfer_syntax_uid)
    for keyword in _IMAGE_PIXEL_KEYWORDS:
        if keyword in header:
            setattr(dataset, keyword, header[keyword].value)
    dataset.NumberOfFrames = 1
    dataset.BitsAllocated = layout.bits_allocated
    value = encapsulate([frame]) if layout.is_encapsulated else frame
    setattr(dataset, layout.pixel_data_keyword, value)
    return dataset


def _decode(dataset: Dataset, plugins: Sequence[str]) -> tuple[NDArray[Any], str]:
    """Decode with the first plugin that succeeds: decoders disagree on odd files."""
    errors: list[str] = []
    for plugin in plugins:
        try:
            return pixel_array(dataset, decoding_plugin=plugin), plugin
        except Exception as error:  # codec errors come in many types; the next may cope
            errors.append(f"{plugin or 'native'}: {error}")
    raise NotRenderableError("no decoder could read the frame: " + "; ".join(errors))


# --- From stored values to 8-bit display values ----------------------------------------


def _display_image(
    pixels: NDArray[Any],
    header: Dataset,
    layout: PixelLayout,
    index: int,
    options: RenderOptions,
) -> Image.Image:
    photometric = layout.photometric_interpretation
    if layout.samples_per_pixel == 3:
        return Image.fromarray(_colour_to_8_bit(pixels, header))
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(pixels, header)
        return Image.fromarray(_colour_to_8_bit(rgb, header, bits=rgb.itemsize * 8))
    display = _voi(_modality(pixels, header, index), header, index, options)
    if photometric == "MONOCHROME1":
        display = 1.0 - display  # the minimum is displayed white (PS3.3 C.7.6.3.1.2)
    return Image.fromarray(np.rint(display * 255).astype(np.uint8))


def _colour_to_8_bit(pixels: NDArray[Any], header: Dataset, bits: int = 0) -> NDArray[np.uint8]:
    bits = bits or int(header.get("BitsStored") or pixels.itemsize * 8)
    if pixels.dtype == np.uint8 and bits == 8:
        return np.asarray(pixels, dtype=np.uint8)
    scaled: FloatArray = pixels.astype(np.float64) * (255 / (2**bits - 1))
    return np.rint(scaled).clip(0, 255).astype(np.uint8)


def _modality(pixels: NDArray[Any], header: Dataset, index: int) -> FloatArray:
    """Stored values to modality values (e.g. Hounsfield units), per frame when enhanced."""
    if "ModalityLUTSequence" in header:
        return np.asarray(apply_modality_lut(pixels, header), dtype=np.float64)
    slope = _frame_value(header, index, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = _frame_value(header, index, "PixelValueTransformationSequence", "RescaleIntercept")
    values = pixels.astype(np.float64)
    return values * float(slope if slope is not None else 1) + float(intercept or 0)


def _voi(values: FloatArray, header: Dataset, index: int, options: RenderOptions) -> FloatArray:
    """Modality values to 0..1: the requested window, the object's, its VOI LUT, or min/max."""
    if options.window_center is not None and options.window_width is not None:
        return _window(
            values, options.window_center, options.window_width, options.voi_lut_function
        )
    center = _first(_frame_value(header, index, "FrameVOILUTSequence", "WindowCenter"))
    width = _first(_frame_value(header, index, "FrameVOILUTSequence", "WindowWidth"))
    if center is not None and width is not None and width > 0:
        function = _frame_value(header, index, "FrameVOILUTSequence", "VOILUTFunction")
        known = function in VOILUTFunction.__members__
        return _window(values, center, width, VOILUTFunction(function) if known else None)
    if "VOILUTSequence" in header:
        lut_bits = int(header.VOILUTSequence[0].LUTDescriptor[2])
        mapped: FloatArray = np.asarray(
            apply_voi(np.rint(values).astype(np.int64), header), dtype=np.float64
        )
        scaled: FloatArray = mapped / (2**lut_bits - 1)
        return scaled
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.float64)
    return (values - low) / (high - low)


def _window(
    values: FloatArray, center: float, width: float, function: VOILUTFunction | None
) -> FloatArray:
    """The VOI functions of PS3.3 C.11.2.1.2 and C.11.2.1.3, scaled to 0..1."""
    if function == VOILUTFunction.SIGMOID:
        return np.asarray(1.0 / (1.0 + np.exp(-4.0 * (values - center) / width)))
    if function == VOILUTFunction.LINEAR_EXACT:
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    if width <= 1:
        # LINEAR with width 1 is a threshold at center - 0.5.
        return (values > center - 0.5).astype(np.float64)
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def _frame_value(header: Dataset, index: int, macro: str, keyword: str) -> Any:
    """A value from the frame's functional groups (per-frame, then shared), else top level."""
    per_frame = header.get("PerFrameFunctionalGroupsSequence") or []
    shared = header.get("SharedFunctionalGroupsSequence") or []
    for groups in (per_frame[index : index + 1], shared[:1]):
        for group in groups:
            for item in group.get(macro) or []:
                if keyword in item:
                    return item[keyword].value
    return header.get(keyword)


def _first(value: Any) -> float | None:
    """The first of a multi-valued Window Center or Width."""
    if value is None or value == "":
        return None
    if isinstance(value, str | bytes) or not hasattr(value, "__len__"):
        return float(value)
    return float(value[0]) if len(value) else None


# --- Output ----------------------------------------------------------------------------


def _fit(image: Image.Image, viewport: tuple[int, int] | None) -> Image.Image:
    """Scale to fit inside the viewport, keeping the aspect ratio."""
    size = _fitted_size(image.size, viewport)
    if size == image.size:
        return image
    _check_output_size(*size)
    return image.resize(size, Image.Resampling.LANCZOS)


def _fitted_size(size: tuple[int, int], viewport: tuple[int, int] | None) -> tuple[int, int]:
    """(width, height) scaled to fit inside the viewport, keeping the aspect ratio."""
    if viewport is None:
        return size
    scale = min(viewport[0] / size[0], viewport[1] / size[1])
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _frame_duration_ms(header: Dataset) -> int:
    frame_time = header.get("FrameTime")
    if frame_time:
        return max(1, round(float(frame_time)))
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        rate = header.get(keyword)
        if rate and float(rate) > 0:
            return max(1, round(1000 / float(rate)))
    return DEFAULT_FRAME_DURATION_MS


def _encode(images: list[Image.Image], options: RenderOptions, durations: list[int]) -> bytes:
    buffer = BytesIO()
    first = images[0]
    if options.media_type == RenderedMediaType.JPEG:
        first.save(buffer, format="JPEG", quality=options.quality)
    elif options.media_type == RenderedMediaType.PNG:
        first.save(buffer, format="PNG")
    elif len(images) == 1:
        first.save(buffer, format="GIF")
    else:
        first.save(
            buffer,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=durations,
            loop=0,
        )
    return buffer.getvalue()
