"""The DICOM audit message (PS3.15 A.5.1) for one record of the audit trail.

The schema is the one DICOM derived from RFC 3881: an EventIdentification, one
ActiveParticipant per participant (the requesting user or remote application, and pedipacs
itself), the AuditSourceIdentification, and a ParticipantObjectIdentification for the patient
and for the study when the record names them. Element and attribute names, and the coded
values (csd-code, codeSystemName, originalText), are the standard's.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from xml.etree.ElementTree import Element, SubElement, tostring

from sqlalchemy import Row

from pedipacs.db.base import aware_utc

OUTCOMES = {0, 4, 8, 12}
ACTIONS = {"C", "R", "U", "D", "E"}
# Characters XML 1.0 cannot carry at all, escaped or not (controls, lone surrogates, U+FFFE/F).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class AuditSource:
    """Who reports: the AuditSourceID (the node's AE title) and the host the messages come
    from (syslog HOSTNAME, and the network access point of pedipacs' own participant)."""

    source_id: str
    host_name: str
    enterprise_site_id: str | None = None

    @classmethod
    def local(cls, ae_title: str = "PEDIPACS") -> AuditSource:
        return cls(ae_title, socket.gethostname())


def audit_message_xml(
    row: Mapping[str, Any] | Row[Any], source: AuditSource | None = None
) -> bytes:
    """The DICOM audit message for one `audit_event` row, as UTF-8 XML with its declaration.

    Element and attribute names are those of the PS3.15 A.5.1 schema: the event (ID, action,
    time, outcome), the requesting user or remote application, pedipacs itself, the audit
    source, and the patient and study involved, when the record names them. The record's
    free-text detail is the EventOutcomeDescription.
    """
    values = record_values(row)
    source = source or AuditSource.local()
    message = Element("AuditMessage")
    _event_identification(message, values)
    requestor = _requestor(message, values)
    _coded(
        _participant(
            message,
            user_id=source.source_id,
            alternative_user_id=f"AETITLES={source.source_id}",
            user_name="pedipacs",
            is_requestor=not requestor,
            access_point=source.host_name,
        ),
        "RoleIDCode",
        "110150",
        "DCM",
        "Application",
    )
    audit_source = SubElement(message, "AuditSourceIdentification")
    audit_source.set("AuditSourceID", _xml_safe(source.source_id))
    if source.enterprise_site_id:
        audit_source.set("AuditEnterpriseSiteID", _xml_safe(source.enterprise_site_id))
    # 4: application server process (the schema's own value set; no code system needed).
    SubElement(audit_source, "AuditSourceTypeCode").set("csd-code", "4")
    if values.get("patient_id"):
        _participant_object(
            message, str(values["patient_id"]), "1", "1", ("2", "RFC-3881", "Patient Number")
        )
    if values.get("study_instance_uid"):
        _participant_object(
            message,
            str(values["study_instance_uid"]),
            "2",
            "3",
            ("110180", "DCM", "Study Instance UID"),
        )
    encoded: bytes = tostring(message, encoding="UTF-8", xml_declaration=True)
    return encoded


def _event_identification(message: Element, values: Mapping[str, Any]) -> None:
    event = SubElement(message, "EventIdentification")
    action = values.get("event_action")
    if action in ACTIONS:
        event.set("EventActionCode", str(action))
    event.set("EventDateTime", utc_timestamp(values["at"]))
    event.set("EventOutcomeIndicator", str(outcome_indicator(values.get("outcome"))))
    _coded(event, "EventID", str(values["event_id"]), "DCM", str(values["event_name"]))
    if values.get("detail"):
        SubElement(event, "EventOutcomeDescription").text = _xml_safe(str(values["detail"]))


def _requestor(message: Element, values: Mapping[str, Any]) -> bool:
    """The person or remote application that asked; False when the record names neither."""
    user, remote_ae, remote_host = (values.get(f) for f in ("user", "remote_ae", "remote_host"))
    user_id = user or remote_ae or remote_host
    if not user_id:
        return False
    _participant(
        message,
        user_id=str(user_id),
        alternative_user_id=f"AETITLES={remote_ae}" if remote_ae else None,
        user_name=None,
        is_requestor=True,
        access_point=str(remote_host) if remote_host else None,
    )
    return True


def _participant(
    message: Element,
    *,
    user_id: str,
    alternative_user_id: str | None,
    user_name: str | None,
    is_requestor: bool,
    access_point: str | None,
) -> Element:
    participant = SubElement(message, "ActiveParticipant")
    participant.set("UserID", _xml_safe(user_id))
    if alternative_user_id:
        participant.set("AlternativeUserID", _xml_safe(alternative_user_id))
    if user_name:
        participant.set("UserName", _xml_safe(user_name))
    participant.set("UserIsRequestor", "true" if is_requestor else "false")
    if access_point:
        participant.set("NetworkAccessPointID", _xml_safe(access_point))
        # 1: machine name, 2: IP address.
        participant.set("NetworkAccessPointTypeCode", "2" if _is_ip(access_point) else "1")
    return participant


def _participant_object(
    message: Element,
    object_id: str,
    type_code: str,
    role: str,
    id_type: tuple[str, str, str],
) -> None:
    participant_object = SubElement(message, "ParticipantObjectIdentification")
    participant_object.set("ParticipantObjectID", _xml_safe(object_id))
    participant_object.set("ParticipantObjectTypeCode", type_code)
    participant_object.set("ParticipantObjectTypeCodeRole", role)
    _coded(participant_object, "ParticipantObjectIDTypeCode", *id_type)


def _coded(parent: Element, name: str, code: str, system: str, meaning: str) -> None:
    """A CodedValueType element: csd-code, codeSystemName and originalText (Code Meaning)."""
    element = SubElement(parent, name)
    element.set("csd-code", _xml_safe(code))
    element.set("codeSystemName", system)
    element.set("originalText", _xml_safe(meaning))


def record_values(row: Mapping[str, Any] | Row[Any]) -> Mapping[str, Any]:
    return row if isinstance(row, Mapping) else cast(Mapping[str, Any], row._mapping)


def outcome_indicator(value: Any) -> int:
    """The record's outcome; anything outside the schema's four values counts as serious."""
    return int(value) if value in OUTCOMES else 8


def utc_timestamp(value: datetime) -> str:
    """UTC with microseconds, as both xsd:dateTime and RFC 5424 TIMESTAMP accept.

    >>> utc_timestamp(datetime(2026, 3, 1, 8, 30, 5, 120))
    '2026-03-01T08:30:05.000120Z'
    """
    return aware_utc(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _xml_safe(text: str) -> str:
    """Text XML can carry: characters XML 1.0 forbids become U+FFFD (the rest is escaped by
    the serializer)."""
    return _NOT_XML.sub("\ufffd", text)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
