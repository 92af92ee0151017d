"""The templates a radiologist chooses from: the built-in ones (`reports/templates.py`) and those
a site added, kept in the `report_template` table and checked by the same rules."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from pedipacs.db.engine import Database
from pedipacs.db.tables import ReportTemplateRow
from pedipacs.errors import Conflict
from pedipacs.model.origin import Origin
from pedipacs.reports.templates import (
    TEMPLATES,
    InvalidTemplateError,
    ReportTemplate,
    TemplateSection,
    UnknownTemplateError,
    template_from_parts,
)
from pedipacs.security.audit import AuditEventId, AuditRecord, record


class TemplateExistsError(Conflict):
    """A template with that key exists already."""


def _from_row(row: ReportTemplateRow) -> ReportTemplate:
    sections = [
        TemplateSection(s["key"], s["title"], bool(s["required"]), s.get("text", ""))
        for s in json.loads(row.sections)
    ]
    return template_from_parts(
        row.key, row.title, sections, modalities=[m for m in row.modalities.split(",") if m]
    )


class ReportTemplateService:
    def __init__(self, database: Database) -> None:
        self._database = database

    def all(self) -> list[ReportTemplate]:
        with self._database.reading() as session:
            return self.list_in(session)

    def list_in(self, session: Session) -> list[ReportTemplate]:
        rows = session.scalars(select(ReportTemplateRow).order_by(ReportTemplateRow.key)).all()
        return [*TEMPLATES.values(), *(_from_row(row) for row in rows)]

    def get(self, key: str) -> ReportTemplate:
        with self._database.reading() as session:
            return self.get_in(session, key)

    def get_in(self, session: Session, key: str) -> ReportTemplate:
        if key in TEMPLATES:
            return TEMPLATES[key]
        row = session.scalars(select(ReportTemplateRow).where(ReportTemplateRow.key == key)).first()
        if row is None:
            raise UnknownTemplateError(f"no report template {key!r}")
        return _from_row(row)

    def add(self, template: ReportTemplate, origin: Origin) -> ReportTemplate:
        """Keep a site's template; refused when its key is taken or it breaks the rules."""
        checked = template_from_parts(
            template.key, template.title, template.sections, modalities=template.modalities
        )

        def work(session: Session) -> ReportTemplate:
            taken = (
                checked.key in TEMPLATES
                or session.scalars(
                    select(ReportTemplateRow.id).where(ReportTemplateRow.key == checked.key)
                ).first()
            )
            if taken:
                raise TemplateExistsError(f"a report template {checked.key!r} exists already")
            session.add(
                ReportTemplateRow(
                    key=checked.key,
                    title=checked.title,
                    modalities=",".join(checked.modalities),
                    sections=json.dumps(
                        [
                            {
                                "key": s.key,
                                "title": s.title,
                                "required": s.is_required,
                                "text": s.text,
                            }
                            for s in checked.sections
                        ]
                    ),
                    created_by=origin.who,
                )
            )
            record(
                session,
                AuditRecord(
                    AuditEventId.APPLICATION_ACTIVITY,
                    "C",
                    origin,
                    detail=f"report template {checked.key} added",
                ),
            )
            return checked

        return self._database.transaction(work)


__all__ = ["InvalidTemplateError", "ReportTemplateService", "TemplateExistsError"]
