"""WADO-URI (PS3.18 9): `/wado?requestType=WADO&studyUID=..&seriesUID=..&objectUID=..`, for
older integrations. The same retrieve and rendering code as WADO-RS answers it."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from pedipacs.dicom import rendering
from pedipacs.dicomweb.deps import CACHE_IMMUTABLE, CACHE_REVALIDATE, Call
from pedipacs.dicomweb.media import DICOM, NotAcceptableError
from pedipacs.dicomweb.wado import file_chunks, uid_query
from pedipacs.errors import InvalidInput, NotFound

router = APIRouter()

_RENDERED = {str(m) for m in rendering.RenderedMediaType}


def _required(request: Request, name: str) -> str:
    value = request.query_params.get(name, "").strip()
    if not value:
        raise InvalidInput(f"WADO-URI needs the {name} parameter")
    return value


def _number(request: Request, name: str) -> float | None:
    value = request.query_params.get(name)
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a number, not {value!r}") from None


def _render_options(request: Request, media_type: str) -> rendering.RenderOptions:
    rows, columns = _number(request, "rows"), _number(request, "columns")
    viewport = None
    if rows or columns:
        # One of the two may be given: the other then follows from the aspect ratio.
        viewport = (int(columns or 65535), int(rows or 65535))
    quality = _number(request, "imageQuality")
    return rendering.RenderOptions(
        media_type=rendering.RenderedMediaType(media_type),
        window_center=_number(request, "windowCenter"),
        window_width=_number(request, "windowWidth"),
        viewport=viewport,
        quality=int(quality) if quality is not None else 90,
    )


@router.get("/wado", summary="WADO-URI: retrieve an object")
def wado_uri(call: Call) -> Response:
    request, services, origin = call.request, call.services, call.origin
    if _required(request, "requestType") != "WADO":
        raise InvalidInput("requestType must be WADO")
    query = uid_query(
        _required(request, "studyUID"),
        _required(request, "seriesUID"),
        _required(request, "objectUID"),
    )
    # PS3.18 9.1.2.1: contentType lists what the client takes, image/jpeg when absent.
    wanted = [
        t.split(";")[0].strip() for t in request.query_params.get("contentType", "").split(",")
    ]
    wanted = [t for t in wanted if t] or ["image/jpeg"]
    locations = services.retrieve.locate(query, origin, purpose="WADO-URI")
    if not locations:
        raise NotFound("no stored instance matches the request")
    location = locations[0]
    for media_type in wanted:
        if media_type == DICOM:
            syntax = request.query_params.get("transferSyntax") or location.transfer_syntax_uid
            headers = {"Cache-Control": CACHE_REVALIDATE}  # the patient can change (merge)
            if syntax == location.transfer_syntax_uid:
                chunks = file_chunks(services.retrieve, location)  # streamed, never held
                return StreamingResponse(chunks, media_type=DICOM, headers=headers)
            data = services.retrieve.transcoded(location, syntax)
            return Response(data, media_type=DICOM, headers=headers)
        if media_type in _RENDERED:
            options = _render_options(request, media_type)
            frame = _number(request, "frameNumber")
            with services.retrieve.local_file(location) as path:
                if frame is None:
                    data = rendering.render_instance(path, options)
                else:
                    data = rendering.render_frame(path, int(frame), options)
            return Response(data, media_type=media_type, headers={"Cache-Control": CACHE_IMMUTABLE})
    raise NotAcceptableError(f"WADO-URI answers as {DICOM} or {', '.join(sorted(_RENDERED))}")
