"""WADO-RS (PS3.18 10.4): instances, metadata, frames, bulk data, rendered images, thumbnails."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from pedipacs.archive.retrieve import RetrieveService
from pedipacs.dicom import frames as dicom_frames
from pedipacs.dicom import rendering
from pedipacs.dicom.bulk_data import bulk_data_value, decoded_frames
from pedipacs.dicom.json_model import with_instance_uri
from pedipacs.dicom.transfer_syntax import PRODUCIBLE_SYNTAXES
from pedipacs.dicomweb.deps import (
    CACHE_IMMUTABLE,
    CACHE_REVALIDATE,
    Call,
    DicomwebCall,
    Services,
    base_url,
    json_response,
)
from pedipacs.dicomweb.media import (
    DICOM,
    DICOM_JSON,
    OCTET_STREAM,
    Choice,
    NotAcceptableError,
    choose,
    frame_choice,
    instance_choice,
    parse_accept,
)
from pedipacs.dicomweb.multipart import (
    CHUNK,
    OutgoingPart,
    content_type,
    new_boundary,
    write_parts,
)
from pedipacs.errors import InvalidInput, NotFound, PedipacsError
from pedipacs.model.levels import InformationModel, QueryLevel
from pedipacs.model.origin import Origin
from pedipacs.model.query import KeyMatch, Query, SingleValue
from pedipacs.model.records import InstanceLocation

log = logging.getLogger(__name__)
router = APIRouter()

STUDY = "/studies/{study}"
SERIES = STUDY + "/series/{series}"
INSTANCE = SERIES + "/instances/{instance}"
MAX_FRAMES_PER_REQUEST = 10_000


def uid_query(study: str, series: str | None = None, instance: str | None = None) -> Query:
    """The entities a WADO URL names, as a query for the retrieve service."""
    keys = [
        ("StudyInstanceUID", study),
        ("SeriesInstanceUID", series),
        ("SOPInstanceUID", instance),
    ]
    matches = tuple(KeyMatch(k, SingleValue(v)) for k, v in keys if v is not None)
    level = (QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.IMAGE)[len(matches) - 1]
    return Query(InformationModel.STUDY_ROOT, level, matches)


def instance_url(root: str, location: InstanceLocation) -> str:
    return (
        f"{root}/studies/{location.study_instance_uid}/series/{location.series_instance_uid}"
        f"/instances/{location.sop_instance_uid}"
    )


def _etag(locations: Sequence[InstanceLocation], variant: str) -> str:
    """Changes whenever an instance is added, its bytes replaced (a new blob key) or its
    patient corrected (merge, change of identifier)."""
    digest = hashlib.sha256(variant.encode())
    for location in locations:
        digest.update(location.blob_key.encode())
        if location.corrected_patient is not None:
            digest.update(repr(location.corrected_patient).encode())
    return f'"{digest.hexdigest()[:32]}"'


def _located(
    services: Services, origin: Origin, query: Query, purpose: str, *, is_image_read: bool = False
) -> list[InstanceLocation]:
    locations = services.retrieve.locate(
        query, origin, purpose=purpose, is_image_read=is_image_read
    )
    if not locations:
        raise NotFound("no stored instance matches the request")
    return locations


# -- instances ------------------------------------------------------------------------------


def _retrieve(call: DicomwebCall, query: Query) -> Response:
    request, services, origin = call.request, call.services, call.origin
    choice = instance_choice(parse_accept(request.headers.get("accept")))
    locations = _located(services, origin, query, "WADO-RS")
    _check_producible(choice.transfer_syntax, locations)
    etag = _etag(locations, f"instances {choice.transfer_syntax}")
    is_single = query.level is QueryLevel.IMAGE
    # Revalidated, never kept blindly: the patient an instance carries can change (a merge).
    headers = {"ETag": etag, "Cache-Control": CACHE_REVALIDATE}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    if is_single and choice.transfer_syntax not in (None, locations[0].transfer_syntax_uid):
        # One instance: convert before answering, so a failure is a 406, not a cut stream.
        data = services.retrieve.transcoded(locations[0], choice.transfer_syntax)
        parts: Iterator[OutgoingPart] = iter([_part(choice.transfer_syntax, [data])])
    else:
        parts = (
            part
            for location in locations
            if (part := _instance_part(services.retrieve, location, choice)) is not None
        )
    boundary = new_boundary()
    return StreamingResponse(
        write_parts(parts, boundary),
        media_type=content_type(DICOM, boundary, choice.transfer_syntax),
        headers=headers,
    )


def _check_producible(syntax: str | None, locations: Sequence[InstanceLocation]) -> None:
    """Refuse up front (406) a transfer syntax that no conversion of ours can produce."""
    if syntax is None or syntax in PRODUCIBLE_SYNTAXES:
        return
    if any(location.transfer_syntax_uid != syntax for location in locations):
        raise NotAcceptableError(
            f"instances can be sent as stored (transfer-syntax=*) or converted to "
            f"{', '.join(sorted(PRODUCIBLE_SYNTAXES))}, not {syntax}"
        )


def _part(transfer_syntax: str, chunks: Iterator[bytes] | list[bytes]) -> OutgoingPart:
    return OutgoingPart({"Content-Type": f"{DICOM}; transfer-syntax={transfer_syntax}"}, chunks)


def _instance_part(
    retrieve: RetrieveService, location: InstanceLocation, choice: Choice
) -> OutgoingPart | None:
    target = choice.transfer_syntax
    if target in (None, location.transfer_syntax_uid):
        return _part(location.transfer_syntax_uid, file_chunks(retrieve, location))
    try:
        return _part(target, [retrieve.transcoded(location, target)])
    except PedipacsError as error:
        # The answer is already streaming: the instance is left out and the reason logged.
        log.warning("WADO-RS left out %s: %s", location.sop_instance_uid, error)
        return None


def file_chunks(retrieve: RetrieveService, location: InstanceLocation) -> Iterator[bytes]:
    with retrieve.open(location) as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


@router.get(STUDY, summary="WADO-RS: retrieve a study")
def retrieve_study(study: str, call: Call) -> Response:
    return _retrieve(call, uid_query(study))


@router.get(SERIES, summary="WADO-RS: retrieve a series")
def retrieve_series(study: str, series: str, call: Call) -> Response:
    return _retrieve(call, uid_query(study, series))


@router.get(INSTANCE, summary="WADO-RS: retrieve an instance")
def retrieve_instance(study: str, series: str, instance: str, call: Call) -> Response:
    return _retrieve(call, uid_query(study, series, instance))


# -- metadata -------------------------------------------------------------------------------


def _metadata(call: DicomwebCall, query: Query) -> Response:
    request, services, origin = call.request, call.services, call.origin
    choose(parse_accept(request.headers.get("accept")), (DICOM_JSON, "application/json"))
    records = services.retrieve.metadata(query, origin)
    if not records:
        raise NotFound("no stored instance matches the request")
    root = base_url(request)
    body = ",".join(
        with_instance_uri(record.dicom_json, instance_url(root, record.location))
        for record in records
    )
    etag = _etag([r.location for r in records], f"metadata {root}")
    return json_response(request, f"[{body}]".encode(), cache_control=CACHE_REVALIDATE, etag=etag)


@router.get(STUDY + "/metadata", summary="WADO-RS: metadata of a study")
def study_metadata(study: str, call: Call) -> Response:
    return _metadata(call, uid_query(study))


@router.get(SERIES + "/metadata", summary="WADO-RS: metadata of a series")
def series_metadata(study: str, series: str, call: Call) -> Response:
    return _metadata(call, uid_query(study, series))


@router.get(INSTANCE + "/metadata", summary="WADO-RS: metadata of an instance")
def instance_metadata(study: str, series: str, instance: str, call: Call) -> Response:
    return _metadata(call, uid_query(study, series, instance))


# -- frames and bulk data -------------------------------------------------------------------


def frame_numbers(text: str) -> list[int]:
    """`1,3,5` -> [1, 3, 5]; a malformed list is refused.

    >>> frame_numbers("1,3, 5")
    [1, 3, 5]
    """
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidInput(
            f"frame list {text!r} is not a comma-separated list of numbers"
        ) from None
    if not numbers or len(numbers) > MAX_FRAMES_PER_REQUEST or min(numbers) < 1:
        raise InvalidInput(f"frame list {text!r} must name frames numbered from 1")
    return numbers


@router.get(INSTANCE + "/frames/{frames}", summary="WADO-RS: frames of an instance")
def retrieve_frames(study: str, series: str, instance: str, frames: str, call: Call) -> Response:
    request, services, origin = call.request, call.services, call.origin
    numbers = frame_numbers(frames)
    location = _located(
        services, origin, uid_query(study, series, instance), "WADO-RS frames", is_image_read=True
    )[0]
    choice = frame_choice(parse_accept(request.headers.get("accept")), location.transfer_syntax_uid)
    etag = _etag([location], f"frames {frames} {choice}")
    headers = {"ETag": etag, "Cache-Control": CACHE_IMMUTABLE}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    with services.retrieve.local_file(location) as path:
        # Both check every frame number before reading or decoding (FrameNotFoundError).
        if choice.transfer_syntax is None:
            bodies = list(dicom_frames.read_frames(path, numbers))
            syntax = location.transfer_syntax_uid
        else:
            bodies = decoded_frames(path, numbers)
            syntax = choice.transfer_syntax
    part_headers = {"Content-Type": f"{choice.part_type}; transfer-syntax={syntax}"}
    boundary = new_boundary()
    parts = [OutgoingPart(part_headers, [body]) for body in bodies]
    return Response(
        b"".join(write_parts(parts, boundary)),
        media_type=content_type(choice.part_type, boundary),
        headers=headers,
    )


@router.get(INSTANCE + "/bulkdata/{path:path}", summary="WADO-RS: bulk data of an instance")
def retrieve_bulk_data(study: str, series: str, instance: str, path: str, call: Call) -> Response:
    request, services, origin = call.request, call.services, call.origin
    location = _located(
        services, origin, uid_query(study, series, instance), "WADO-RS bulkdata", is_image_read=True
    )[0]
    choose(parse_accept(request.headers.get("accept")), ("multipart/related", OCTET_STREAM))
    with services.retrieve.local_file(location) as file_path:
        value = bulk_data_value(file_path, path)
    boundary = new_boundary()
    parts = [OutgoingPart({"Content-Type": OCTET_STREAM}, [value])]
    return Response(
        b"".join(write_parts(parts, boundary)),
        media_type=content_type(OCTET_STREAM, boundary),
        headers={"Cache-Control": CACHE_IMMUTABLE, "ETag": _etag([location], f"bulk {path}")},
    )


# -- rendered and thumbnails ----------------------------------------------------------------


def render_options(request: Request) -> rendering.RenderOptions:
    """PS3.18 8.3.5.1.3: `window=center,width[,function]`, `viewport=w,h`, `quality`."""
    accept = parse_accept(request.headers.get("accept"))
    media_type = choose(accept, [str(m) for m in rendering.RenderedMediaType])
    params = request.query_params
    center = width = None
    function = rendering.VOILUTFunction.LINEAR
    try:
        if "window" in params:
            parts = params["window"].split(",")
            center, width = float(parts[0]), float(parts[1])
            if len(parts) > 2:
                function = rendering.VOILUTFunction(parts[2].strip().upper())
        viewport = None
        if "viewport" in params:
            sizes = [int(v) for v in params["viewport"].split(",")[:2]]
            viewport = (sizes[0], sizes[1])
        quality = int(params.get("quality", "90"))
    except (ValueError, IndexError):
        raise InvalidInput(
            "rendering parameters are window=center,width[,function], viewport=width,height "
            "and quality=1..100"
        ) from None
    return rendering.RenderOptions(
        media_type=rendering.RenderedMediaType(media_type),
        window_center=center,
        window_width=width,
        voi_lut_function=function,
        viewport=viewport,
        quality=quality,
    )


def _image_response(data: bytes, options: rendering.RenderOptions, etag: str) -> Response:
    return Response(
        data,
        media_type=str(options.media_type),
        headers={"Cache-Control": CACHE_IMMUTABLE, "ETag": etag},
    )


def _rendered(
    call: DicomwebCall,
    query: Query,
    frame: int | None,
    *,
    is_thumbnail: bool,
) -> Response:
    request, services, origin = call.request, call.services, call.origin
    options = render_options(request)
    locations = _located(services, origin, query, "WADO-RS rendered", is_image_read=True)
    # A study or series is shown by its middle instance (PS3.18 leaves the choice open).
    location = (
        locations[len(locations) // 2] if query.level is not QueryLevel.IMAGE else locations[0]
    )
    etag = _etag([location], f"rendered {frame} {request.url.query} {options.media_type}")
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers={"ETag": etag})
    with services.retrieve.local_file(location) as path:
        if is_thumbnail:
            data = rendering.render_thumbnail(path, options)
        elif frame is None:
            data = rendering.render_instance(path, options)
        else:
            data = rendering.render_frame(path, frame, options)
    return _image_response(data, options, etag)


@router.get(INSTANCE + "/rendered", summary="WADO-RS: an instance rendered as an image")
def rendered_instance(study: str, series: str, instance: str, call: Call) -> Response:
    query = uid_query(study, series, instance)
    return _rendered(call, query, None, is_thumbnail=False)


@router.get(INSTANCE + "/frames/{frames}/rendered", summary="WADO-RS: a frame rendered as an image")
def rendered_frame(study: str, series: str, instance: str, frames: str, call: Call) -> Response:
    numbers = frame_numbers(frames)
    if len(numbers) != 1:
        raise InvalidInput("a rendered frame request names exactly one frame")
    query = uid_query(study, series, instance)
    return _rendered(call, query, numbers[0], is_thumbnail=False)


@router.get(STUDY + "/thumbnail", summary="WADO-RS: thumbnail of a study")
def study_thumbnail(study: str, call: Call) -> Response:
    return _rendered(call, uid_query(study), None, is_thumbnail=True)


@router.get(SERIES + "/thumbnail", summary="WADO-RS: thumbnail of a series")
def series_thumbnail(study: str, series: str, call: Call) -> Response:
    query = uid_query(study, series)
    return _rendered(call, query, None, is_thumbnail=True)


@router.get(INSTANCE + "/thumbnail", summary="WADO-RS: thumbnail of an instance")
def instance_thumbnail(study: str, series: str, instance: str, call: Call) -> Response:
    query = uid_query(study, series, instance)
    return _rendered(call, query, None, is_thumbnail=True)
