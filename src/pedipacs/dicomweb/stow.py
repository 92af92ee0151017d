"""STOW-RS (PS3.18 10.5): store instances sent as multipart/related application/dicom parts.

Each part goes through the same ingest service as a C-STORE, as soon as it has arrived: the
request body is never held whole. The answer lists what was stored and what failed, and why.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from pedipacs.dicom.header import read_dataset_header
from pedipacs.dicomweb.deps import Call, DicomwebCall, Services, base_url
from pedipacs.dicomweb.errors import (
    CANNOT_UNDERSTAND,
    failure_reason_from_error,
    http_status_from_error,
    public_message,
)
from pedipacs.dicomweb.media import (
    DICOM,
    DICOM_JSON,
    UnsupportedMediaTypeError,
    choose,
    parse_accept,
)
from pedipacs.dicomweb.multipart import (
    IncomingPart,
    MalformedMultipartError,
    boundary_from_content_type,
    read_parts,
)
from pedipacs.errors import PedipacsError
from pedipacs.model.origin import Origin

log = logging.getLogger(__name__)
router = APIRouter()

_ACCEPTED_PART_TYPES = ("", DICOM)
PARTS_IN_FLIGHT = 4
_STORED = 200
_PARTLY_STORED = 202
_NOTHING_STORED = 409


@dataclass(frozen=True, slots=True)
class _Outcome:
    sop_class_uid: str | None
    sop_instance_uid: str | None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    failure_reason: int | None = None
    message: str | None = None


def _store_part(
    services: Services, part: IncomingPart, origin: Origin, study: str | None
) -> _Outcome:
    if part.content_type not in _ACCEPTED_PART_TYPES:
        return _Outcome(
            None, None, failure_reason=CANNOT_UNDERSTAND,
            message=f"a part of type {part.content_type!r} is not application/dicom",
        )  # fmt: skip
    try:
        stored = services.ingest.ingest(part.body, origin, study_instance_uid=study)
    except PedipacsError as error:
        if http_status_from_error(error) >= 500:
            # The client reads a fixed phrase (`public_message`); the reason is kept here.
            log.error("STOW-RS part not stored: %s", error)
        sop_class, sop_instance = _identity(part.body)
        return _Outcome(
            sop_class, sop_instance, failure_reason=failure_reason_from_error(error),
            message=public_message(error),
        )  # fmt: skip
    return _Outcome(
        stored.sop_class_uid,
        stored.sop_instance_uid,
        stored.study_instance_uid,
        stored.series_instance_uid,
    )


def _identity(data: bytes) -> tuple[str | None, str | None]:
    """The SOP Class and Instance UIDs of a refused object, if it can be read at all."""
    try:
        header = read_dataset_header(data)
    except PedipacsError:
        return None, None
    sop_class = header.get("SOPClassUID")
    sop_instance = header.get("SOPInstanceUID")
    return (str(sop_class) if sop_class else None, str(sop_instance) if sop_instance else None)


async def _store(call: DicomwebCall, study: str | None) -> Response:
    request, services, origin = call.request, call.services, call.origin
    choose(parse_accept(request.headers.get("accept")), (DICOM_JSON, "application/json"))
    content_type = request.headers.get("content-type")
    _, part_type = boundary_from_content_type(content_type)
    if part_type not in (None, DICOM):
        raise UnsupportedMediaTypeError(
            f"parts of type {part_type!r} are not accepted; send application/dicom"
        )
    # A few parts are ingested at once while the next ones arrive: one part's fsyncs overlap
    # another's parsing. Memory holds at most PARTS_IN_FLIGHT (+1 arriving) parts.
    slots = asyncio.Semaphore(PARTS_IN_FLIGHT)
    pending: list[asyncio.Task[_Outcome]] = []

    async def store(part: IncomingPart) -> _Outcome:
        try:
            return await run_in_threadpool(_store_part, services, part, origin, study)
        finally:
            slots.release()

    try:
        async for part in read_parts(
            request.stream(), content_type, max_part_size=services.max_object_size
        ):
            await slots.acquire()
            pending.append(asyncio.create_task(store(part)))
    finally:
        # Never answer (or fail) while a part is still being stored.
        outcomes = await asyncio.gather(*pending)
    if not outcomes:
        raise MalformedMultipartError("the request holds no instance")
    return _response(list(outcomes), base_url(request), study)


def _response(outcomes: list[_Outcome], root: str, study: str | None) -> Response:
    stored = [o for o in outcomes if o.failure_reason is None]
    failed = [o for o in outcomes if o.failure_reason is not None]
    body: dict[str, object] = {}
    studies = {o.study_instance_uid for o in stored} | ({study} if study else set())
    if len(studies) == 1:
        body["00081190"] = {"vr": "UR", "Value": [f"{root}/studies/{studies.pop()}"]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": [_failed_item(o) for o in failed]}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": [_stored_item(o, root) for o in stored]}
    status = _STORED if not failed else (_PARTLY_STORED if stored else _NOTHING_STORED)
    headers = {}
    if failed:
        # The reasons in words, for people reading logs (the body carries the codes).
        reasons = "; ".join(sorted({o.message or "" for o in failed}))[:1000]
        headers["Warning"] = f'299 pedipacs: "{_header_safe(reasons)}"'
    return Response(
        json.dumps(body, separators=(",", ":")).encode(),
        status_code=status,
        media_type=DICOM_JSON,
        headers=headers,
    )


def _header_safe(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 and c != '"' else "'" for c in text)


def _reference(outcome: _Outcome) -> dict[str, object]:
    item: dict[str, object] = {}
    if outcome.sop_class_uid:
        item["00081150"] = {"vr": "UI", "Value": [outcome.sop_class_uid]}
    if outcome.sop_instance_uid:
        item["00081155"] = {"vr": "UI", "Value": [outcome.sop_instance_uid]}
    return item


def _failed_item(outcome: _Outcome) -> dict[str, object]:
    item = _reference(outcome)
    item["00081197"] = {"vr": "US", "Value": [outcome.failure_reason]}
    return item


def _stored_item(outcome: _Outcome, root: str) -> dict[str, object]:
    item = _reference(outcome)
    url = (
        f"{root}/studies/{outcome.study_instance_uid}/series/{outcome.series_instance_uid}"
        f"/instances/{outcome.sop_instance_uid}"
    )
    item["00081190"] = {"vr": "UR", "Value": [url]}
    return item


@router.post("/studies", summary="STOW-RS: store instances")
async def store_instances(call: Call) -> Response:
    return await _store(call, None)


@router.post("/studies/{study}", summary="STOW-RS: store instances of one study")
async def store_study_instances(study: str, call: Call) -> Response:
    return await _store(call, study)
