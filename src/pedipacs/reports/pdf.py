"""One released report version as an A4 PDF: what the web page offers for download and what the
archive wraps in an Encapsulated PDF object.

The PDF uses the core fonts (nothing to ship or embed), which know only WinAnsi (cp1252) text;
anything else is replaced by its closest unaccented form, or "?" (see `printable`). The output is
a function of the document alone: the creation date is the version's release time and the file
identifier a hash of the content, so a retried job produces the same bytes.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import UTC, date, datetime, tzinfo

from fpdf import FPDF
from fpdf.enums import MethodReturnValue, XPos, YPos

from pedipacs.model.age import paediatric_age
from pedipacs.model.reports import ReportStatus
from pedipacs.reports.distribution import ReportDocument

FONT = "Helvetica"
LINE = 5.0  # mm, body text line height
LABEL_WIDTH = 42.0  # mm, the label column of the patient and exam blocks
MISSING = "—"
BLACK = (0, 0, 0)
GREY = (100, 100, 100)
RED = (190, 0, 0)
LIGHT_RED = (253, 236, 236)
BLUE = (20, 60, 150)
SEX = {"M": "male", "F": "female", "O": "other"}

# The core fonts' WinAnsiEncoding; fpdf2's default, Latin-1, would refuse the typographic quotes
# and dashes a report pasted from a word processor contains.
CORE_FONT_ENCODING = "cp1252"
# Letters NFKD leaves whole (a stroke is not a combining mark) and signs radiologists type.
_FALLBACKS = str.maketrans(
    {"Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h", "ı": "i", "Ŧ": "T", "ŧ": "t",
     "≤": "<=", "≥": ">=", "→": "->", "←": "<-", "≈": "~", "≠": "!=", "\t": "    "}
)  # fmt: skip


def printable(text: str) -> str:
    """`text` with every character the core fonts cannot show replaced by its unaccented form
    (Unicode NFKD less combining marks), or by "?" when it has none.

    >>> printable("ŁUKASZ, Zoë – Ørsted “ok” ≥ 2 cm")
    'LUKASZ, Zoë – Ørsted “ok” >= 2 cm'
    >>> printable("Nguyễn Ａ αβ 肺\\r\\nx\\u200b")
    'Nguyen A ?? ?\\nx'
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_FALLBACKS)
    return "".join(_printable_character(character) for character in text)


def _printable_character(character: str) -> str:
    if character == "\n":
        return character
    if unicodedata.category(character) in ("Cc", "Cf"):
        return ""  # control and invisible format characters (zero-width space, BOM)
    if _is_encodable(character):
        return character
    decomposed = "".join(
        part for part in unicodedata.normalize("NFKD", character) if not unicodedata.combining(part)
    )
    return decomposed if decomposed and _is_encodable(decomposed) else "?"


def _is_encodable(text: str) -> bool:
    try:
        text.encode(CORE_FONT_ENCODING)
    except UnicodeEncodeError:
        return False
    return True


def person_name(value: str | None) -> str:
    """A DICOM PN as the report prints it, "FAMILY, Given Middle" (alphabetic group only).

    >>> person_name("OKORO^CHIDI^EMEKA"), person_name("Lefèvre^Anne-Sophie"), person_name(None)
    ('OKORO, Chidi Emeka', 'LEFÈVRE, Anne-Sophie', '')
    >>> person_name("Radiology on call")
    'Radiology on call'
    """
    parts = [part.strip() for part in (value or "").split("=", 1)[0].split("^")]
    family = parts[0]
    given = " ".join(part for part in parts[1:3] if part)
    if not given:
        return family
    if given.isupper():
        given = given.title()  # names registered in capitals: only the family name stays so
    return f"{family.upper()}, {given}"


def report_pdf(
    document: ReportDocument, *, institution: str | None = None, time_zone: tzinfo = UTC
) -> bytes:
    """The PDF of one released report version; dates and times are shown in `time_zone`."""
    pdf = _ReportPdf(document, institution, time_zone)
    pdf.add_page()
    _title(pdf, document)
    _patient_block(pdf, document, time_zone)
    _exam_block(pdf, document, time_zone)
    if document.critical_finding:
        _critical_box(pdf, document.critical_finding)
    for title, text in document.sections:
        _section(pdf, title, text)
    for text, author, at in document.addenda:
        _section(pdf, f"Addendum by {author}, {_when(at, time_zone)}", text)
    _signature(pdf, document, time_zone)
    return bytes(pdf.output())


class _ReportPdf(FPDF):
    """Running header (institution, status) and footer (patient, page X of Y) on every page."""

    def __init__(self, document: ReportDocument, institution: str | None, zone: tzinfo) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.core_fonts_encoding = CORE_FONT_ENCODING
        self.set_margins(18, 15, 18)
        self.set_auto_page_break(auto=True, margin=20)
        self.set_creation_date(document.observed_at)
        self.set_creator("pedipacs")
        self.set_title(f"Radiology report {document.accession_number}")
        self.set_author(_signer(document))
        self.set_lang("en")
        self._institution = printable(institution) if institution else None
        self._status = document.status
        patient = document.patient
        self._footer = printable(
            f"{person_name(patient.name) or MISSING} · {patient.patient_id} · "
            f"accession {document.accession_number} · released {_when(document.observed_at, zone)}"
        )

    def header(self) -> None:
        self.set_font(FONT, "B", 9)
        self.set_text_color(*GREY)
        left = f"pedipacs · {self._institution}" if self._institution else "pedipacs"
        self.cell(0, 5, left, new_x=XPos.LMARGIN, new_y=YPos.TOP)
        if self._status in (ReportStatus.PRELIMINARY, ReportStatus.DRAFT):
            # Every page, so a page printed alone cannot pass for a signed report.
            self.set_text_color(*RED)
            self.cell(0, 5, f"{self._status.upper()} REPORT", align="R")
        self.set_draw_color(*GREY)
        self.set_line_width(0.2)
        self.line(self.l_margin, self.t_margin + 6, self.w - self.r_margin, self.t_margin + 6)
        self.set_y(self.t_margin + 9)
        self.set_text_color(*BLACK)

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font(FONT, "", 8)
        self.set_text_color(*GREY)
        self.cell(0, 5, self._footer, new_x=XPos.LMARGIN, new_y=YPos.TOP)
        self.cell(0, 5, f"page {self.page_no()} of {{nb}}", align="R")


def _title(pdf: FPDF, document: ReportDocument) -> None:
    pdf.set_font(FONT, "B", 18)
    pdf.cell(0, 10, "Radiology report", new_x=XPos.LMARGIN, new_y=YPos.TOP)
    color = {ReportStatus.AMENDED: BLUE, ReportStatus.FINAL: BLACK}.get(document.status, RED)
    pdf.set_text_color(*color)
    pdf.cell(0, 10, document.status.upper(), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if document.status in (ReportStatus.PRELIMINARY, ReportStatus.DRAFT):
        pdf.set_fill_color(*RED)
        pdf.set_text_color(255, 255, 255)
        pdf.set_font(FONT, "B", 11)
        banner = f"{document.status.upper()} REPORT — not validated by a final signature"
        pdf.cell(0, 8, banner, fill=True, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    elif document.status is ReportStatus.AMENDED:
        pdf.set_font(FONT, "B", 10)
        note = "Amended after signature: the addenda at the end complete or correct the report."
        pdf.cell(0, 6, note, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*BLACK)
    pdf.ln(3)


def _patient_block(pdf: FPDF, document: ReportDocument, zone: tzinfo) -> None:
    patient = document.patient
    issuer = f" (issuer {patient.issuer})" if patient.issuer else ""
    birth = patient.birth_date
    exam_day = _exam_day(document, zone)
    _block(
        pdf,
        "Patient",
        [
            ("Name", person_name(patient.name)),
            ("Patient ID", f"{patient.patient_id}{issuer}"),
            ("Birth date", _date(birth)),
            ("Sex", SEX.get(patient.sex or "", patient.sex)),
            (
                "Age at exam",
                paediatric_age(birth, exam_day) if birth and birth <= exam_day else None,
            ),
        ],
    )


def _exam_block(pdf: FPDF, document: ReportDocument, zone: tzinfo) -> None:
    procedure = document.procedure
    if procedure and document.procedure_code:
        procedure = f"{procedure} ({document.procedure_code})"
    ordered = _when(document.ordered_at, zone) if document.ordered_at else None
    performed = _date(document.study_date)
    if performed and document.study_time:
        performed = f"{performed} {document.study_time:%H:%M}"  # DICOM: already local time
    _block(
        pdf,
        "Examination",
        [
            ("Accession number", document.accession_number),
            ("Procedure", procedure or document.procedure_code),
            ("Modality", " ".join(document.modalities)),
            ("Reason", document.reason),
            ("Referring physician", person_name(document.referring_physician)),
            ("Ordered", ordered),
            ("Study date", performed),
            ("Study Instance UID", document.study_instance_uid),
        ],
    )


def _block(pdf: FPDF, heading: str, rows: Sequence[tuple[str, str | None]]) -> None:
    pdf.set_font(FONT, "B", 12)
    pdf.cell(0, 7, heading, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for label, value in rows:
        pdf.set_font(FONT, "", 9)
        pdf.set_text_color(*GREY)
        pdf.cell(LABEL_WIDTH, LINE, label)
        pdf.set_font(FONT, "", 10)
        pdf.set_text_color(*BLACK)
        text = printable(value) if value else MISSING
        pdf.multi_cell(0, LINE, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)


def _critical_box(pdf: FPDF, finding: str) -> None:
    text = printable(finding)
    width = pdf.epw - 6
    pdf.set_font(FONT, "", 10)
    measured = pdf.multi_cell(width, LINE, text, dry_run=True, output=MethodReturnValue.HEIGHT)
    height = 3 + 7 + (measured if isinstance(measured, float | int) else LINE) + 3
    page_body = pdf.h - pdf.t_margin - 9 - pdf.b_margin
    if pdf.will_page_break(height) and height <= page_body:
        pdf.add_page()  # keep the box whole; one longer than a page just flows on
    if height <= page_body:
        pdf.set_draw_color(*RED)
        pdf.set_fill_color(*LIGHT_RED)
        pdf.set_line_width(0.8)
        pdf.rect(pdf.l_margin, pdf.get_y(), pdf.epw, height, style="DF")
    pdf.ln(3)
    pdf.set_x(pdf.l_margin + 3)
    pdf.set_font(FONT, "B", 12)
    pdf.set_text_color(*RED)
    pdf.cell(width, 7, "Critical result", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_x(pdf.l_margin + 3)
    pdf.set_font(FONT, "", 10)
    pdf.set_text_color(*BLACK)
    pdf.multi_cell(width, LINE, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(7)


def _section(pdf: FPDF, title: str, text: str) -> None:
    if pdf.will_page_break(7 + 2 * LINE):
        pdf.add_page()  # never a title alone at the foot of a page
    pdf.set_font(FONT, "B", 12)
    pdf.multi_cell(0, 7, printable(title), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 10)
    pdf.multi_cell(0, LINE, printable(text.strip()), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)


def _signature(pdf: FPDF, document: ReportDocument, zone: tzinfo) -> None:
    signer, when = _signer(document), _when(document.observed_at, zone)
    if document.status is ReportStatus.FINAL:
        line = f"Signed by {signer} on {when}"
    elif document.status is ReportStatus.AMENDED:
        # This version is the addendum; the document does not carry the first signature's time.
        line = f"Signed by {signer}; amended on {when}"
    else:
        line = f"Preliminary report by {signer} on {when}"
    pdf.ln(2)
    pdf.set_font(FONT, "B", 10)
    pdf.multi_cell(0, LINE, printable(line), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _exam_day(document: ReportDocument, zone: tzinfo) -> date:
    """The study date; before images arrive, the day of the order, or else of the report."""
    if document.study_date:
        return document.study_date
    return (document.ordered_at or document.observed_at).astimezone(zone).date()


def _signer(document: ReportDocument) -> str:
    return person_name(document.signed_by_name) or document.signed_by or document.author


def _when(at: datetime, zone: tzinfo) -> str:
    local = at.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname() or ''}".rstrip()


def _date(value: date | None) -> str | None:
    return value.isoformat() if value else None
