"""The CapabilityStatement `/fhir/r4/metadata` answers: FHIR 4.0.1, JSON only, read and search
of the four resource types with the search parameters `search_params.py` defines."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from pedipacs import __version__
from pedipacs.fhir.resources import Json
from pedipacs.fhir.search_params import (
    ORDER_SEARCH,
    PATIENT_SEARCH,
    REPORT_SEARCH,
    STUDY_SEARCH,
    SearchDefinition,
)

FHIR_VERSION = "4.0.1"
SECURITY = (
    "Every request carries a pedipacs bearer token (`Authorization: Bearer ...`) or a page "
    "session, of an account allowed to search. A referring clinician finds only the patients "
    "in their care (a read of another patient's record answers 404); every read and search "
    "is on the audit trail."
)
COMMON_PARAMETERS = (
    ("_count", "number", "Entries per page: 50 by default, at most 200; 0 for the total only"),
    ("_offset", "number", "The first entry of the page (the `next` link carries it)"),
)


def _resource(definition: SearchDefinition[Any]) -> Json:
    parameters = [p for p in definition.parameters if "." not in p.name]
    return {
        "type": definition.resource_type,
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "versioning": "no-version",
        "readHistory": False,
        "updateCreate": False,
        "searchParam": [
            *({"name": p.name, "type": p.type, "documentation": p.documentation}
              for p in parameters),
            *({"name": name, "type": kind, "documentation": text}
              for name, kind, text in COMMON_PARAMETERS),
        ],
    }  # fmt: skip


def capability_statement(base: str) -> CapabilityStatement:
    return CapabilityStatement.model_validate(
        {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": datetime.now(UTC).date().isoformat(),
            "publisher": "pedipacs",
            "kind": "instance",
            "software": {"name": "pedipacs", "version": __version__},
            "implementation": {"description": "pedipacs FHIR R4 (read and search)", "url": base},
            "fhirVersion": FHIR_VERSION,
            "format": ["application/fhir+json", "json"],
            "rest": [
                {
                    "mode": "server",
                    "documentation": "Read and search only; unknown search parameters are "
                    "ignored and named in an OperationOutcome entry (or refused with "
                    "`Prefer: handling=strict`).",
                    "security": {"description": SECURITY},
                    "resource": [
                        _resource(definition)
                        for definition in (
                            PATIENT_SEARCH,
                            ORDER_SEARCH,
                            STUDY_SEARCH,
                            REPORT_SEARCH,
                        )
                    ],
                }
            ],
        }
    )
