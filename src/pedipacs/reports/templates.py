"""Report templates: the sections a report is written in, which of them must be filled before
signing, and the text each starts with.

Every template has the five sections of a radiology report (clinical information, technique,
comparison, findings, impression); findings and impression must say something before a report
is signed, clinical information too (a child's exam is read against its question). The
built-in templates below cover the general case and four paediatric exams; a site adds its
own through `ReportTemplateService` (they are checked against the same rules).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pedipacs.errors import InvalidInput

CLINICAL_INFORMATION = "clinical_information"
TECHNIQUE = "technique"
COMPARISON = "comparison"
FINDINGS = "findings"
IMPRESSION = "impression"
# Every template has these sections, in this order; the first, fourth and fifth must be filled.
STANDARD_SECTIONS = (CLINICAL_INFORMATION, TECHNIQUE, COMPARISON, FINDINGS, IMPRESSION)
ALWAYS_REQUIRED = frozenset({CLINICAL_INFORMATION, FINDINGS, IMPRESSION})
SECTION_TITLES = {
    CLINICAL_INFORMATION: "Clinical information",
    TECHNIQUE: "Technique",
    COMPARISON: "Comparison",
    FINDINGS: "Findings",
    IMPRESSION: "Impression",
}
MAX_SECTION_TEXT = 20_000
KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
GENERAL = "general"


class InvalidTemplateError(InvalidInput):
    """A template lacks a section every report needs, or names one twice."""


class UnknownTemplateError(InvalidInput):
    """No template has that key."""


@dataclass(frozen=True, slots=True)
class TemplateSection:
    key: str
    title: str
    is_required: bool
    text: str = ""  # what the section starts with in a new report


@dataclass(frozen=True, slots=True)
class ReportTemplate:
    key: str
    title: str
    sections: tuple[TemplateSection, ...]
    modalities: tuple[str, ...] = ()  # offered first for exams of these modalities
    is_built_in: bool = True

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(section.key for section in self.sections if section.is_required)

    def section_keys(self) -> tuple[str, ...]:
        return tuple(section.key for section in self.sections)

    def starting_text(self) -> dict[str, str]:
        return {section.key: section.text for section in self.sections}

    def missing(self, text: Mapping[str, str]) -> list[str]:
        """The titles of the required sections `text` leaves empty.

        >>> TEMPLATES[GENERAL].missing({"clinical_information": "fever", "findings": " "})
        ['Findings', 'Impression']
        """
        return [
            section.title
            for section in self.sections
            if section.is_required and not text.get(section.key, "").strip()
        ]

    def checked_text(self, text: Mapping[str, str]) -> dict[str, str]:
        """The report text limited to this template's sections, each section a string."""
        unknown = sorted(set(text) - set(self.section_keys()))
        if unknown:
            raise InvalidInput(
                f"the {self.title} template has no section {', '.join(unknown)}; its sections "
                f"are {', '.join(self.section_keys())}"
            )
        checked = {}
        for section in self.sections:
            value = text.get(section.key, "")
            if not isinstance(value, str):
                raise InvalidInput(f"section {section.title}: text expected")
            if len(value) > MAX_SECTION_TEXT:
                raise InvalidInput(
                    f"section {section.title}: at most {MAX_SECTION_TEXT} characters"
                )
            checked[section.key] = value.replace("\r\n", "\n")
        return checked


def template_from_parts(
    key: str,
    title: str,
    sections: Iterable[TemplateSection],
    *,
    modalities: Iterable[str] = (),
    is_built_in: bool = False,
) -> ReportTemplate:
    """A template, checked: a valid key, the standard sections present once each, the
    findings, impression and clinical information required."""
    if not KEY_PATTERN.match(key):
        raise InvalidTemplateError(
            f"template key {key!r}: lower-case letters, digits and '-', at most 64"
        )
    if not title.strip():
        raise InvalidTemplateError("a template needs a title")
    parts = tuple(sections)
    keys = [section.key for section in parts]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise InvalidTemplateError(f"template {key}: section {', '.join(repeated)} appears twice")
    absent = [SECTION_TITLES[k] for k in STANDARD_SECTIONS if k not in keys]
    if absent:
        raise InvalidTemplateError(
            f"template {key} lacks the section(s) every report needs: {', '.join(absent)}"
        )
    optional = [s.title for s in parts if s.key in ALWAYS_REQUIRED and not s.is_required]
    if optional:
        raise InvalidTemplateError(
            f"template {key}: {', '.join(optional)} must be required (a report is not signed "
            "without them)"
        )
    for section in parts:
        if not KEY_PATTERN.match(section.key.replace("_", "-")) or not section.title.strip():
            raise InvalidTemplateError(f"template {key}: section {section.key!r} is not valid")
    return ReportTemplate(
        key, title.strip(), parts, modalities=tuple(modalities), is_built_in=is_built_in
    )


def _built_in(
    key: str, title: str, modalities: tuple[str, ...], **texts: str
) -> tuple[str, ReportTemplate]:
    sections = [
        TemplateSection(k, SECTION_TITLES[k], k in ALWAYS_REQUIRED, texts.get(k, ""))
        for k in STANDARD_SECTIONS
    ]
    return key, template_from_parts(key, title, sections, modalities=modalities, is_built_in=True)


TEMPLATES: dict[str, ReportTemplate] = dict(
    [
        _built_in(GENERAL, "General", ()),
        _built_in(
            "us-appendicitis",
            "Abdominal ultrasound for appendicitis",
            ("US",),
            technique="Graded-compression ultrasound of the right lower quadrant, high-frequency "
            "linear probe.",
            findings="Appendix: visualised / not visualised.\n"
            "Maximal outer diameter: __ mm. Compressible: yes / no.\n"
            "Appendicolith: absent / present.\n"
            "Periappendiceal fat: normal / echogenic. Free fluid: none / small / moderate.\n"
            "Mesenteric lymph nodes: ",
            impression="",
        ),
        _built_in(
            "us-hip-ddh",
            "Hip ultrasound for developmental dysplasia (Graf)",
            ("US",),
            technique="Coronal ultrasound of both hips in lateral decubitus (Graf method), "
            "with dynamic stress views.",
            findings="Right hip: alpha __°, beta __°, Graf type __. Femoral head coverage __%. "
            "Stable / unstable on stress.\n"
            "Left hip: alpha __°, beta __°, Graf type __. Femoral head coverage __%. "
            "Stable / unstable on stress.",
        ),
        _built_in(
            "xr-chest-paediatric",
            "Chest radiograph (child)",
            ("CR", "DX"),
            technique="Single frontal (AP/PA) chest radiograph.",
            findings="Lines and tubes: \nLungs: \nPleura: \n"
            "Heart and mediastinum (cardiothoracic ratio): \nBones and soft tissues: ",
        ),
        _built_in(
            "us-head-neonatal",
            "Head ultrasound of the neonate",
            ("US",),
            technique="Transfontanellar ultrasound through the anterior fontanelle, coronal and "
            "sagittal planes.",
            findings="Germinal matrix / intraventricular haemorrhage: none / grade __ (Papile), "
            "right / left.\n"
            "Ventricles: normal size / dilated (ventricular index __ mm).\n"
            "Periventricular white matter: normal / increased echogenicity / cysts.\n"
            "Extra-axial spaces: \nMidline structures: ",
        ),
    ]
)
