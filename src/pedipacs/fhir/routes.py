"""The FHIR R4 routes under `/fhir/r4`."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter

from pedipacs.reports.authoring import ReportService
from pedipacs.reports.clinical_records import ClinicalRecordService
from pedipacs.reports.report_objects import ReportObjectService
from pedipacs.reports.timeline import PatientTimelineService

FHIR_ROOT = "/fhir/r4"


@dataclass(frozen=True, slots=True)
class FhirServices:
    records: ClinicalRecordService
    timelines: PatientTimelineService
    reports: ReportService
    report_objects: ReportObjectService


def fhir_router(services: FhirServices) -> APIRouter:
    del services
    return APIRouter(tags=["fhir"])
