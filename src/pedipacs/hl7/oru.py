"""Reports out as HL7 v2.5.1 ORU^R01 over MLLP: the `hl7-oru` job handler.

One message per released version of a report (preliminary, final, each addendum) to each
configured receiver. The message carries the patient (PID, PV1), the order (ORC, OBR with the
accession number, the result status P/F/C and the principal result interpreter), one OBX per
report section as formatted text, the critical finding flagged `AA`, each addendum, and the
Study Instance UID.

Delivery is at least once: a receiver that acknowledged but whose acknowledgement was lost to
a crash gets the message again. Its control ID (MSH-10) is the same every time (`PPR<job>`),
so a receiver that drops re-sent control IDs (as pedipacs' own HL7 inbox does) applies it
exactly once. AA/CA: delivered. AR/CR, no answer, no connection: retried with back-off. AE/CE:
the receiver refused the content; retrying cannot help, the job fails and waits on the jobs
page.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import UTC, datetime

from pedipacs.hl7.messages import DEFAULT_DELIMITERS, Delimiters, escape
from pedipacs.hl7.mllp import FrameReader, FrameTooLargeError, frame
from pedipacs.jobs.queue import GiveUp, LeasedJob, RetryLater
from pedipacs.model.origin import Origin
from pedipacs.reports.authoring import ReportService
from pedipacs.reports.distribution import ReportDocument

OUR_APPLICATION = "PEDIPACS"
VERSION = "2.5.1"
CHARACTER_SET = "UNICODE UTF-8"
MAX_ACK = 64 * 1024
LINE_BREAK = "\\.br\\"  # HL7 formatted text (FT) line break
# OBX-3 codes: the report sections as local codes, the Study Instance UID as DICOM's.
SECTION_CODING = "L"
STUDY_UID_CODE = ("113014", "Study Instance UID", "DCM")
CRITICAL_CODE = ("CRITICAL", "Critical result", "L")
ADDENDUM_CODE = ("ADDENDUM", "Addendum", "L")
CRITICAL_ABNORMAL = "AA"  # HL7 table 0078: critically abnormal


def result_status(document: ReportDocument) -> str:
    """OBR-25 / OBX-11: P preliminary, F final, C corrected (a final report with an addendum)."""
    if document.is_correction:
        return "C"
    return "F" if document.is_final else "P"


def _hl7_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


def _formatted(text: str, delimiters: Delimiters) -> str:
    """Text with its line breaks kept, as an FT value."""
    lines = text.replace("\r\n", "\n").split("\n")
    return LINE_BREAK.join(escape(line, delimiters) for line in lines)


def _name_parts(person_name: str | None) -> list[str]:
    """A DICOM PN's alphabetic group as HL7 name parts: family, given, middle, suffix, prefix
    (DICOM orders them family, given, middle, prefix, suffix)."""
    parts = (person_name or "").split("=", 1)[0].split("^") + [""] * 5
    return [parts[0], parts[1], parts[2], parts[4], parts[3]]


def _xpn(person_name: str | None, d: Delimiters) -> str:
    """PID-5 (XPN) from a DICOM PN.

    >>> _xpn("NGUYEN^LAN", DEFAULT_DELIMITERS)
    'NGUYEN^LAN'
    """
    parts = [escape(part, d) for part in _name_parts(person_name)]
    return d.component.join(parts).rstrip(d.component)


def _xcn(person_name: str | None, d: Delimiters) -> str:
    """OBR-16 (XCN: an ID, then the name) from a DICOM PN, without an ID."""
    name = _xpn(person_name, d)
    return f"{d.component}{name}" if name else ""


def _ndl(person_name: str | None, d: Delimiters) -> str:
    """OBR-32 (NDL, whose first component is a CNN: ID, family, given as subcomponents)."""
    family, given = (escape(part, d) for part in _name_parts(person_name)[:2])
    return d.subcomponent.join(["", family, given]).rstrip(d.subcomponent) if family else ""


def _coded(code: tuple[str, str, str], delimiters: Delimiters) -> str:
    return delimiters.component.join(escape(part, delimiters) for part in code)


def _section_code(title: str) -> tuple[str, str, str]:
    """A report section as a local code: `FINDINGS^Findings^L`."""
    return (title.upper().replace(" ", "_")[:20], title, SECTION_CODING)


def build_oru(
    document: ReportDocument,
    *,
    control_id: str,
    receiving_facility: str = "",
    now: datetime | None = None,
    delimiters: Delimiters = DEFAULT_DELIMITERS,
) -> str:
    """The ORU^R01 announcing one released version of a report; segments end with CR."""
    d = delimiters

    def e(text: str | None) -> str:
        return escape(text or "", d)

    status = result_status(document)
    patient = document.patient
    identifier = d.component.join([e(patient.patient_id), "", "", e(patient.issuer), "MR"])
    signer = document.signed_by_name or document.signed_by or document.author
    observed = _hl7_time(document.observed_at)
    procedure = d.component.join(
        [e(document.procedure_code or ""), e(document.procedure or "Imaging exam"), "L"]
    )
    segments = [
        ["MSH", d.encoding_characters, OUR_APPLICATION, "", "", e(receiving_facility),
         _hl7_time(now or datetime.now(UTC)), "", d.component.join(["ORU", "R01", "ORU_R01"]),
         e(control_id), "P", VERSION, "", "", "AL", "NE", "", CHARACTER_SET],
        ["PID", "1", "", identifier, "", _xpn(patient.name, d), "",
         patient.birth_date.strftime("%Y%m%d") if patient.birth_date else "", e(patient.sex or "")],
        ["PV1", "1", e(document.patient_class or "U")],
        ["ORC", "RE", e(document.placer_order_number or ""),
         e(document.filler_order_number or document.accession_number), "", "CM"],
        ["OBR", "1", e(document.placer_order_number or ""),
         e(document.filler_order_number or document.accession_number), procedure, "", "",
         observed, "", "", "", "", "", e(document.reason or ""), "", "",
         _xcn(document.referring_physician, d), "", e(document.accession_number), "", "", "",
         observed, "", "", status, "", "", "", "", "", "", _ndl(signer, d)],
    ]  # fmt: skip
    observations: list[tuple[tuple[str, str, str], str, str, str]] = []
    for title, text in document.sections:
        flag = CRITICAL_ABNORMAL if document.critical_finding and title == "Impression" else ""
        observations.append((_section_code(title), "FT", _formatted(text, d), flag))
    if document.critical_finding:
        observations.append(
            (CRITICAL_CODE, "FT", _formatted(document.critical_finding, d), CRITICAL_ABNORMAL)
        )
    for text, author, at in document.addenda:
        heading = f"Addendum by {author}, {at.astimezone(UTC):%Y-%m-%d %H:%M} UTC:"
        observations.append((ADDENDUM_CODE, "FT", _formatted(f"{heading}\n{text}", d), ""))
    if document.study_instance_uid:
        observations.append((STUDY_UID_CODE, "ST", e(document.study_instance_uid), ""))
    for number, (code, value_type, value, flag) in enumerate(observations, start=1):
        segments.append(
            ["OBX", str(number), value_type, _coded(code, d), "", value, "", "", flag, "", "",
             status, "", "", observed]
        )  # fmt: skip
    return "".join(d.field.join(fields).rstrip(d.field) + "\r" for fields in segments)


def acknowledgement_code(ack: bytes) -> tuple[str, str]:
    """MSA-1 and MSA-3 of an acknowledgement, ('', '') when it has no readable MSA."""
    text = ack.decode("utf-8", errors="replace")
    segments = [s for s in text.replace("\n", "\r").split("\r") if s]
    if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 4:
        return "", ""
    separator = segments[0][3]
    for segment in segments:
        fields = segment.split(separator)
        if fields[0] == "MSA":
            return (fields[1] if len(fields) > 1 else ""), (fields[3] if len(fields) > 3 else "")
    return "", ""


def exchange(host: str, port: int, message: bytes, timeout: float) -> bytes:
    """Send one framed message, return the acknowledgement's frame."""
    with socket.create_connection((host, port), timeout=timeout) as connection:
        connection.settimeout(timeout)
        connection.sendall(frame(message))
        reader = FrameReader(MAX_ACK)
        while True:
            data = connection.recv(4096)
            if not data:
                raise ConnectionError("the receiver closed the connection without acknowledging")
            frames = reader.feed(data)
            if frames:
                return frames[0]


def oru_handler(
    reports: ReportService,
    *,
    receiving_facility: str = "",
    timeout: float = 30.0,
) -> Callable[[LeasedJob], str]:
    """The `hl7-oru` job handler: payload {report_id, version, receiver: "host:port"}."""

    def handle(job: LeasedJob) -> str:
        receiver = str(job.payload["receiver"])
        host, _, port = receiver.rpartition(":")
        document = reports.document(int(job.payload["report_id"]), int(job.payload["version"]))
        message = build_oru(
            document, control_id=f"PPR{job.id}", receiving_facility=receiving_facility
        )
        try:
            ack = exchange(host, int(port), message.encode("utf-8"), timeout)
        except (OSError, FrameTooLargeError) as error:
            raise RetryLater(f"{receiver}: {error}") from error
        code, text = acknowledgement_code(ack)
        if code in ("AE", "CE"):
            reports.record_sent(document, receiver, Origin.job("hl7-oru"), is_refused=True)
            raise GiveUp(f"{receiver} refused the message ({code}): {text}")
        if code not in ("AA", "CA"):
            raise RetryLater(f"{receiver} answered {code or 'no MSA'}: {text}")
        reports.record_sent(document, receiver, Origin.job("hl7-oru"))
        return f"ORU^R01 {result_status(document)} of {document.accession_number} to {receiver}"

    return handle
