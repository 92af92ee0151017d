"""Clinical records as other systems read them (the FHIR door): patients, orders, studies and
reports found by their identifiers, each search limited to the patients the asker may see and
audited."""

from __future__ import annotations

from pedipacs.db.engine import Database
from pedipacs.reports.template_store import ReportTemplateService


class ClinicalRecordService:
    def __init__(self, database: Database, templates: ReportTemplateService) -> None:
        self._database = database
        self._templates = templates
