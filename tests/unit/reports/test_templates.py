"""Report templates: the built-in ones are valid; a site's template is kept only with the five
sections every report has, findings, impression and clinical information required; a report
written with a site template is checked against it."""

from __future__ import annotations

import pytest

from pedipacs.node import Node
from pedipacs.reports.authoring import MissingReportSectionsError, ReportDraft
from pedipacs.reports.template_store import TemplateExistsError
from pedipacs.reports.templates import (
    STANDARD_SECTIONS,
    TEMPLATES,
    InvalidTemplateError,
    ReportTemplate,
    TemplateSection,
    template_from_parts,
)
from support.reporting import FINDINGS_TEXT, RADIOLOGIST, exam

ADMIN_ORIGIN = RADIOLOGIST


def sections(*, drop: str | None = None, optional: str | None = None) -> list[TemplateSection]:
    return [
        TemplateSection(key, key.replace("_", " ").capitalize(),
                        key in ("clinical_information", "findings", "impression")
                        and key != optional)
        for key in STANDARD_SECTIONS
        if key != drop
    ]  # fmt: skip


def test_the_built_in_templates_include_paediatric_ones_and_are_valid() -> None:
    assert {"general", "us-appendicitis", "us-hip-ddh", "xr-chest-paediatric",
            "us-head-neonatal"} <= set(TEMPLATES)  # fmt: skip
    for template in TEMPLATES.values():
        assert template.section_keys() == STANDARD_SECTIONS
        assert set(template.required) == {"clinical_information", "findings", "impression"}
    assert "Graf type" in TEMPLATES["us-hip-ddh"].starting_text()["findings"]


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (sections(drop="impression"), "lacks the section.*Impression"),
        (sections(drop="findings"), "lacks the section.*Findings"),
        (sections(optional="impression"), "must be required"),
        ([*sections(), TemplateSection("findings", "Findings again", True)], "appears twice"),
    ],
)
def test_a_template_without_the_required_sections_is_refused(
    parts: list[TemplateSection], message: str
) -> None:
    with pytest.raises(InvalidTemplateError, match=message):
        template_from_parts("us-renal", "Renal ultrasound", parts)


def test_a_sites_template_is_kept_once_and_used_for_reports(node: Node) -> None:
    renal = ReportTemplate(
        "us-renal", "Renal ultrasound",
        (*sections(), TemplateSection("measurements", "Measurements", True, "Right kidney: mm")),
        modalities=("US",), is_built_in=False,
    )  # fmt: skip
    node.report_templates.add(renal, ADMIN_ORIGIN)
    with pytest.raises(TemplateExistsError):
        node.report_templates.add(renal, ADMIN_ORIGIN)
    with pytest.raises(InvalidTemplateError):
        node.report_templates.add(
            ReportTemplate("us-bad", "Bad", tuple(sections(drop="impression"))), ADMIN_ORIGIN
        )
    assert [t.key for t in node.report_templates.all()][-1] == "us-renal"
    accession = exam(node, 31)
    draft = node.reports.save(accession, ReportDraft(FINDINGS_TEXT, template_key="us-renal"),
                              RADIOLOGIST)  # fmt: skip
    assert draft.sections["measurements"] == ""
    with pytest.raises(MissingReportSectionsError, match="Measurements"):
        node.reports.sign(accession, ReportDraft(FINDINGS_TEXT, revision=draft.revision),
                          RADIOLOGIST, is_final=True)  # fmt: skip
