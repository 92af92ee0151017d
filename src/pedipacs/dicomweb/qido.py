"""QIDO-RS (PS3.18 10.6): search for studies, series and instances."""

from __future__ import annotations

import dataclasses
import json

from fastapi import APIRouter, Response

from pedipacs.dicom.json_model import json_from_values
from pedipacs.dicomweb.deps import (
    CACHE_REVALIDATE,
    Call,
    base_url,
    json_response,
)
from pedipacs.dicomweb.media import DICOM_JSON, choose, parse_accept
from pedipacs.dicomweb.qido_params import QidoRequest, query_from_qido_params
from pedipacs.model.levels import QueryLevel
from pedipacs.model.records import QueryMatch

router = APIRouter()

# An answer holds at most the query service's `max_results` matches (the `max_query_results`
# setting), with or without a `limit`; when that cuts it short, a Warning header says so
# (PS3.18 query result pagination).
_TRUNCATED_WARNING = (
    '299 pedipacs: "There are more results than returned; ask for them with offset."'
)
_JSON_TYPES = (DICOM_JSON, "application/json")


def _search(
    call: Call,
    level: QueryLevel,
    path_uids: dict[str, str],
) -> Response:
    request, services, origin = call.request, call.services, call.origin
    choose(parse_accept(request.headers.get("accept")), _JSON_TYPES)
    qido = query_from_qido_params(list(request.query_params.multi_items()), level, path_uids)
    maximum = services.queries.max_results
    asked = qido.query.limit
    page = maximum if asked is None else min(asked, maximum)
    # One more than the page tells whether the answer is truncated.
    query = dataclasses.replace(qido.query, limit=page + 1)
    matches = list(services.queries.find(query, origin))
    is_truncated = len(matches) > page
    root = base_url(request)
    body = json.dumps(
        [_json_match(match, qido, root) for match in matches[:page]],
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    response = json_response(request, body, cache_control=CACHE_REVALIDATE)
    if is_truncated and (asked is None or asked > maximum):
        response.headers["Warning"] = _TRUNCATED_WARNING
    return response


def _json_match(match: QueryMatch, qido: QidoRequest, root: str) -> dict[str, object]:
    values = match.values
    url = f"{root}/studies/{values.get('StudyInstanceUID')}"
    if qido.query.level in (QueryLevel.SERIES, QueryLevel.IMAGE):
        url += f"/series/{values.get('SeriesInstanceUID')}"
    if qido.query.level is QueryLevel.IMAGE:
        url += f"/instances/{values.get('SOPInstanceUID')}"
    extra = [
        ("00080056", {"vr": "CS", "Value": ["ONLINE"]}),  # InstanceAvailability
        ("00081190", {"vr": "UR", "Value": [url]}),  # RetrieveURL
    ]
    return json_from_values(values, extra)


@router.get("/studies", summary="QIDO-RS: search for studies")
def search_studies(call: Call) -> Response:
    return _search(call, QueryLevel.STUDY, {})


@router.get("/series", summary="QIDO-RS: search for series in all studies")
def search_all_series(call: Call) -> Response:
    return _search(call, QueryLevel.SERIES, {})


@router.get("/studies/{study}/series", summary="QIDO-RS: search for series of a study")
def search_series(study: str, call: Call) -> Response:
    return _search(call, QueryLevel.SERIES, {"StudyInstanceUID": study})


@router.get("/instances", summary="QIDO-RS: search for instances in all studies")
def search_all_instances(call: Call) -> Response:
    return _search(call, QueryLevel.IMAGE, {})


@router.get("/studies/{study}/instances", summary="QIDO-RS: search for instances of a study")
def search_study_instances(study: str, call: Call) -> Response:
    return _search(call, QueryLevel.IMAGE, {"StudyInstanceUID": study})


@router.get(
    "/studies/{study}/series/{series}/instances",
    summary="QIDO-RS: search for instances of a series",
)
def search_series_instances(study: str, series: str, call: Call) -> Response:
    uids = {"StudyInstanceUID": study, "SeriesInstanceUID": series}
    return _search(call, QueryLevel.IMAGE, uids)
