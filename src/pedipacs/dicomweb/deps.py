"""What every DICOMweb route needs: the services (put on the app by `web/app.py`), the Origin
of the request (set by the authentication middleware, `http/auth.py`), and the answers'
common headers."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response

from pedipacs.archive.ingest import IngestService
from pedipacs.archive.query import QueryService
from pedipacs.archive.retrieve import RetrieveService
from pedipacs.http.auth import CurrentOrigin
from pedipacs.model.origin import Origin

# JSON answers shorter than this are not worth compressing.
GZIP_MINIMUM = 1024
# Patient data may be kept by the user's browser, never by a shared cache.
CACHE_IMMUTABLE = "private, max-age=86400"
CACHE_REVALIDATE = "private, no-cache"


@dataclass(frozen=True, slots=True)
class DicomwebServices:
    ingest: IngestService
    queries: QueryService
    retrieve: RetrieveService
    max_object_size: int


def _services(request: Request) -> DicomwebServices:
    services: DicomwebServices = request.app.state.dicomweb
    return services


Services = Annotated[DicomwebServices, Depends(_services)]


@dataclass(frozen=True, slots=True)
class DicomwebCall:
    """What a DICOMweb route works with: the request, the services and who is asking."""

    request: Request
    services: DicomwebServices
    origin: Origin


def _call(request: Request, services: Services, origin: CurrentOrigin) -> DicomwebCall:
    return DicomwebCall(request, services, origin)


Call = Annotated[DicomwebCall, Depends(_call)]


def base_url(request: Request) -> str:
    """The DICOMweb root as the client reached it, for RetrieveURL and BulkDataURI values."""
    return str(request.base_url).rstrip("/") + "/dicomweb"


def json_response(
    request: Request, body: bytes, *, cache_control: str, etag: str | None = None
) -> Response:
    """An application/dicom+json answer, gzipped when the client accepts it."""
    headers = {"Cache-Control": cache_control, "Vary": "Accept, Accept-Encoding"}
    if etag is not None:
        headers["ETag"] = etag
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
    if len(body) >= GZIP_MINIMUM and "gzip" in request.headers.get("accept-encoding", ""):
        body = gzip.compress(body, compresslevel=1)
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type="application/dicom+json", headers=headers)
