"""The PDF of a released report: content, page furniture, determinism and non-Latin text."""

from __future__ import annotations

import re
import zlib
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from pedipacs.model.reports import PatientLine, ReportStatus, VersionKind
from pedipacs.reports.distribution import ReportDocument
from pedipacs.reports.pdf import report_pdf

SIGNED_AT = datetime(2026, 3, 14, 16, 45, tzinfo=UTC)
STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.DOTALL)
# A string shown by Tj, or the end of a text object (the strings of one are one line: fpdf2
# writes the "{nb}" total of "page X of Y" as a second string).
TEXT_TOKEN = re.compile(rb"\(((?:\\.|[^\\)])*)\)\s*Tj|\bET\b", re.DOTALL)
ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}


def a_document(**changes: object) -> ReportDocument:
    document = ReportDocument(
        report_id=7,
        version=2,
        kind=VersionKind.FINAL,
        status=ReportStatus.FINAL,
        accession_number="RAD2026031401",
        placer_order_number="P-88",
        filler_order_number="F-88",
        patient=PatientLine("MRN0042", "CHILDRENS", "NGUYEN^LAN", date(2025, 12, 20), "F"),
        patient_class="E",
        referring_physician="OKORO^CHIDI",
        procedure="Chest X-ray, one view",
        procedure_code="XRCH1",
        reason="Fever and cough",
        study_instance_uid="1.2.826.0.1.3680043.8.498.77",
        modalities=("DX",),
        sections=(
            ("Findings", "Right upper lobe consolidation.\nNo pleural effusion."),
            ("Impression", "Right upper lobe pneumonia."),
        ),
        addenda=(),
        critical_finding=None,
        author="rad.martin",
        signed_by="rad.martin",
        signed_by_name="MARTIN^CLAIRE",
        observed_at=SIGNED_AT,
        ordered_at=datetime(2026, 3, 14, 9, 5, tzinfo=UTC),
    )
    return replace(document, **changes)  # type: ignore[arg-type]


def page_texts(pdf: bytes) -> list[str]:
    """The strings each page shows, one page per content stream (fpdf2 writes one per page and
    no other compressed stream with core fonts), as the core fonts encode them (cp1252)."""
    pages = []
    for stream in STREAM.findall(pdf):
        lines, line = [], b""
        for token in TEXT_TOKEN.finditer(zlib.decompress(stream)):
            if token.group(1) is not None:
                line += _unescaped(token.group(1))
            elif line:
                lines.append(line.decode("cp1252"))
                line = b""
        pages.append("\n".join(lines))
    assert pages, "no content stream found"
    return pages


def _unescaped(literal: bytes) -> bytes:
    def one(match: re.Match[bytes]) -> bytes:
        escaped = match.group(1)
        return ESCAPES.get(escaped, escaped)

    return re.sub(rb"\\(.)", one, literal, flags=re.DOTALL)


def text_of(pdf: bytes) -> str:
    return "\n".join(page_texts(pdf))


def test_pdf_shows_patient_exam_sections_and_signature() -> None:
    pdf = report_pdf(a_document(), institution="Hôpital des Enfants")

    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")
    text = text_of(pdf)
    for expected in (
        "pedipacs · Hôpital des Enfants",
        "Radiology report",
        "FINAL",
        "NGUYEN, Lan",
        "MRN0042 (issuer CHILDRENS)",
        "2025-12-20",
        "female",
        "12 weeks",  # 2025-12-20 to the order on 2026-03-14: 2 months 22 days, 84 days
        "RAD2026031401",
        "Chest X-ray, one view (XRCH1)",
        "Fever and cough",
        "OKORO, Chidi",
        "1.2.826.0.1.3680043.8.498.77",
        "Findings",
        "Right upper lobe consolidation.",
        "No pleural effusion.",
        "Impression",
        "Right upper lobe pneumonia.",
        "Signed by MARTIN, Claire on 2026-03-14 16:45 UTC",
    ):
        assert expected in text, expected
    assert "Critical result" not in text
    assert "PRELIMINARY" not in text


def test_critical_finding_and_addenda_are_shown_in_order() -> None:
    document = a_document(
        kind=VersionKind.ADDENDUM,
        status=ReportStatus.AMENDED,
        critical_finding="Tension pneumothorax, left",
        addenda=(
            ("Comparison with the 12 March film: new.", "rad.martin", SIGNED_AT),
            (
                "Discussed with Dr Okoro (PICU) at 17:10.",
                "rad.chen",
                SIGNED_AT + timedelta(hours=1),
            ),
        ),
        observed_at=SIGNED_AT + timedelta(hours=1),
    )

    text = text_of(report_pdf(document))

    assert "AMENDED" in text
    positions = [
        text.index(expected)
        for expected in (
            "Critical result",
            "Tension pneumothorax, left",
            "Findings",
            "Impression",
            "Addendum by rad.martin, 2026-03-14 16:45 UTC",
            "Comparison with the 12 March film: new.",
            "Addendum by rad.chen, 2026-03-14 17:45 UTC",
            "Discussed with Dr Okoro (PICU) at 17:10.",  # parentheses survive PDF escaping
            "Signed by MARTIN, Claire; amended on 2026-03-14 17:45 UTC",
        )
    ]
    assert positions == sorted(positions)


def test_preliminary_report_is_marked_on_every_page_and_pages_are_numbered() -> None:
    long_text = "\n".join(f"Line {number}: " + "segmental finding " * 12 for number in range(150))
    document = a_document(
        kind=VersionKind.PRELIMINARY,
        status=ReportStatus.PRELIMINARY,
        sections=(("Findings", long_text), ("Impression", "See above.")),
    )

    pages = page_texts(report_pdf(document))

    assert len(pages) >= 3
    for number, page in enumerate(pages, start=1):
        assert "PRELIMINARY REPORT" in page
        assert f"page {number} of {len(pages)}" in page
        assert "NGUYEN, Lan · MRN0042 · accession RAD2026031401" in page
    # every line of the long section is printed, in order, across the pages
    text = "\n".join(pages)
    assert [text.index(f"Line {n}: ") for n in range(150)] == sorted(
        text.index(f"Line {n}: ") for n in range(150)
    )
    assert "Preliminary report by MARTIN, Claire on 2026-03-14 16:45 UTC" in pages[-1]
    assert "Signed by" not in text


def test_long_words_and_lines_wrap_inside_the_page() -> None:
    document = a_document(sections=(("Findings", "x" * 400 + " " + "word " * 300),))

    pages = page_texts(report_pdf(document))

    text = "\n".join(pages)
    assert text.count("x") >= 400
    assert max(len(line) for line in text.splitlines()) < 150


def test_same_document_gives_the_same_bytes_dated_by_its_release() -> None:
    document = a_document(critical_finding="Free air")

    first = report_pdf(document, institution="Children's Hospital")
    second = report_pdf(document, institution="Children's Hospital")

    assert first == second
    assert b"/CreationDate (D:20260314164500Z" in first
    later = report_pdf(replace(document, observed_at=SIGNED_AT + timedelta(minutes=1)))
    assert later != first


def test_text_outside_the_core_fonts_is_approximated_not_refused() -> None:
    document = a_document(
        patient=PatientLine("MRN9", "CHILDRENS", "ŁUKASZ^Zoë", date(2020, 5, 1), "M"),
        sections=(
            ("Findings – “résumé”", "Opacité ≥ 2 cm.\r\nΔιάγνωση: πνευμονία. 肺炎。\tEnd\u200b."),
        ),
        critical_finding="Ošetření ihned",
        signed_by_name="Wójcik^Łucja",
    )

    text = text_of(report_pdf(document))

    assert "LUKASZ, Zoë" in text
    assert "Findings – “résumé”" in text  # cp1252 has the typographic dashes and quotes
    assert "Opacité >= 2 cm." in text
    assert f"{'?' * len('Διάγνωση')}: {'?' * len('πνευμονία')}. ???" in text
    assert "    End." in text
    assert "Ošetrení ihned" in text  # š and í are in cp1252, ř is not
    assert "Signed by WÓJCIK, Lucja" in text


def test_times_are_shown_in_the_given_time_zone_and_age_at_the_exam_day() -> None:
    document = a_document(
        patient=PatientLine("MRN1", "CHILDRENS", "DOE^BABY", date(2026, 3, 14), "O"),
        ordered_at=datetime(2026, 3, 14, 23, 30, tzinfo=UTC),  # already 15 March in Paris
    )

    text = text_of(report_pdf(document, time_zone=ZoneInfo("Europe/Paris")))

    assert "1 day" in text
    assert "other" in text
    assert "Signed by MARTIN, Claire on 2026-03-14 17:45 CET" in text


def test_age_is_taken_on_the_study_date_when_the_study_has_one() -> None:
    document = a_document(study_date=date(2026, 1, 19), study_time=time(8, 5, 30))

    text = text_of(report_pdf(document))

    assert "Study date\n2026-01-19 08:05" in text
    assert "Age at exam\n30 days" in text  # from 2025-12-20, not 12 weeks on the order day


@pytest.mark.parametrize(
    "patient",
    [
        PatientLine("MRN2", "", None, None, None),
        PatientLine("MRN3", "CHILDRENS", "DOE", date(2027, 1, 1), "U"),  # born after the exam
    ],
)
def test_missing_or_odd_patient_values_do_not_break_the_page(patient: PatientLine) -> None:
    document = a_document(
        patient=patient,
        referring_physician=None,
        procedure=None,
        procedure_code=None,
        reason=None,
        study_instance_uid=None,
        signed_by_name=None,
        ordered_at=None,
    )

    text = text_of(report_pdf(document))

    assert patient.patient_id in text
    assert "Age at exam\n—" in text
    assert "Signed by rad.martin on 2026-03-14 16:45 UTC" in text
