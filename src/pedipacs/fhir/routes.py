"""The FHIR R4 routes under `/fhir/r4`: read and search of Patient, ServiceRequest,
ImagingStudy and DiagnosticReport, and the CapabilityStatement (`/metadata`).

Each route turns its parameters into one call of `ClinicalRecordService` (which applies the
asker's patient scope and audits) and the records it answers into resources; every failure is
an OperationOutcome (`errors.py`). Every route needs the search permission. Answers are
`application/fhir+json` (`_format=json` is accepted; XML is not served).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.imagingstudy import ImagingStudy
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir_core.fhirabstractmodel import FHIRAbstractModel

from pedipacs.fhir.bundle import searchset
from pedipacs.fhir.capability import capability_statement
from pedipacs.fhir.errors import (
    FHIR_JSON,
    FhirRoute,
    FormatNotSupportedError,
    MethodNotSupportedError,
    UnknownFhirPathError,
)
from pedipacs.fhir.resources import (
    Json,
    Site,
    diagnostic_report_resource,
    imaging_study_resource,
    patient_resource,
    service_request_resource,
)
from pedipacs.fhir.search_params import (
    ORDER_SEARCH,
    PATIENT_SEARCH,
    REPORT_SEARCH,
    STUDY_SEARCH,
    SearchDefinition,
    parse_search,
)
from pedipacs.http.auth import CurrentOrigin, requires
from pedipacs.model.clinical import RecordPage
from pedipacs.model.origin import Origin
from pedipacs.reports.clinical_records import ClinicalRecordService
from pedipacs.security.permissions import Permission

FHIR_ROOT = "/fhir/r4"
JSON_FORMATS = frozenset(
    {"json", "application/json", "application/fhir+json", "application/json+fhir"}
)
JSON_RANGES = JSON_FORMATS - {"json"} | {"*/*", "application/*"}

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class FhirServices:
    records: ClinicalRecordService
    # The hospital's time zone (Settings.timezone): DICOM dates and times are local. Without
    # it, ImagingStudy.started is given to the day.
    time_zone: tzinfo | None = None


def fhir_router(services: FhirServices) -> APIRouter:
    router = APIRouter(
        tags=["fhir"],
        route_class=FhirRoute,
        dependencies=[requires(Permission.SEARCH), Depends(_check_format)],
    )
    zone = services.time_zone
    records = services.records

    @router.get("/metadata")
    def metadata(request: Request) -> Response:
        return _answer(capability_statement(_site(request, zone).base))

    _resource_routes(
        router,
        zone,
        PATIENT_SEARCH,
        Patient,
        records.get_patient,
        records.find_patients,
        lambda record, _site: patient_resource(record),
    )
    _resource_routes(
        router,
        zone,
        ORDER_SEARCH,
        ServiceRequest,
        records.get_order,
        records.find_orders,
        lambda record, _site: service_request_resource(record),
    )
    _resource_routes(
        router,
        zone,
        STUDY_SEARCH,
        ImagingStudy,
        records.get_study,
        records.find_studies,
        imaging_study_resource,
    )
    _resource_routes(
        router,
        zone,
        REPORT_SEARCH,
        DiagnosticReport,
        records.get_report,
        records.find_reports,
        diagnostic_report_resource,
    )
    _unknown_routes(router)
    return router


def _resource_routes(
    router: APIRouter,
    zone: tzinfo | None,
    definition: SearchDefinition[Any],
    model: type[FHIRAbstractModel],
    get: Callable[[str, Origin], R],
    find: Callable[[Any, Origin], RecordPage[R]],
    resource: Callable[[R, Site], Json],
) -> None:
    """`GET /<type>/<id>` (read) and `GET /<type>` (search) of one resource type."""
    resource_type = definition.resource_type

    @router.get(f"/{resource_type}/{{key}}", name=f"fhir_read_{resource_type.lower()}")
    def read(key: str, request: Request, origin: CurrentOrigin) -> Response:
        return _answer(model.model_validate(resource(get(key, origin), _site(request, zone))))

    @router.get(f"/{resource_type}", name=f"fhir_search_{resource_type.lower()}")
    def search(request: Request, origin: CurrentOrigin) -> Response:
        strict = "handling=strict" in request.headers.get("prefer", "").replace(" ", "").lower()
        parsed = parse_search(definition, request.query_params.multi_items(), is_strict=strict)
        page = find(parsed.criteria, origin)
        site = _site(request, zone)
        return _answer(
            searchset(site.base, resource_type, parsed, page, lambda r: resource(r, site))
        )


def _unknown_routes(router: APIRouter) -> None:
    """Anything else under the FHIR base answers an OperationOutcome too."""

    @router.api_route(
        "/{path:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,  # not an operation: the answer to every other request
    )
    def unknown(path: str, request: Request) -> Response:
        if request.method != "GET":
            raise MethodNotSupportedError(
                f"{request.method} /{path}: this server reads and searches only"
            )
        raise UnknownFhirPathError(
            f"/{path[:100]}: not a resource type or interaction this server offers "
            f"(see {FHIR_ROOT}/metadata)"
        )


def _site(request: Request, zone: tzinfo | None) -> Site:
    server = str(request.base_url).rstrip("/")
    return Site(server=server, base=server + FHIR_ROOT, time_zone=zone)


def _answer(resource: FHIRAbstractModel) -> Response:
    return Response(
        resource.model_dump_json(), media_type=FHIR_JSON, headers={"Cache-Control": "no-store"}
    )


def _check_format(request: Request) -> None:
    """FHIR JSON only: `_format` json (or a JSON media type), and an `Accept` that takes it."""
    wanted = request.query_params.get("_format")
    # A `+` left unencoded in the query string arrives as a space.
    if wanted is not None and wanted.strip().lower().replace(" ", "+") not in JSON_FORMATS:
        raise FormatNotSupportedError(f"_format={wanted[:40]}: only FHIR JSON is served")
    accept = request.headers.get("accept", "").strip()
    ranges = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    if accept and not ranges & JSON_RANGES:
        raise FormatNotSupportedError(f"Accept: {accept[:80]}: only application/fhir+json")
