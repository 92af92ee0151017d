"""Clinical records as the FHIR door reads them, on both databases: patients by key, identifier,
name, birth date and sex; orders, studies (series and instances) and released reports by
patient, identifier, order and status; pages with their total; a merged patient left out of
searches but read with a pointer to the survivor; drafts never shown, a report re-edited after
its preliminary signature shown as signed; a clinician's scope narrowing every search and
hiding other children's records; every read and search on the audit trail."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import pytest
from sqlalchemy import func, select

from pedipacs.db.tables import AuditEvent
from pedipacs.model.clinical import (
    DateRange,
    IdentifierKind,
    IdentifierMatch,
    OrderCriteria,
    PatientCriteria,
    ReportCriteria,
    StudyCriteria,
)
from pedipacs.model.origin import Origin
from pedipacs.model.reports import ReportStatus
from pedipacs.model.ris import OrderStatus, PatientIdentity, PatientRegistration, Priority
from pedipacs.node import Node
from pedipacs.reports.authoring import ReportDraft
from pedipacs.reports.clinical_records import UnknownClinicalRecordError
from pedipacs.ris.identity import merge_patients
from support.reporting import FINDINGS_TEXT, HIS, ISSUER, RADIOLOGIST, UID_ROOT, child, exam

ADMIN = Origin.http("pacs.admin", "10.0.0.2")
CLINICIAN = replace(Origin.http("dr.okafor", "10.0.0.9"), patient_scope=frozenset({"MRN6001"}))
PATIENT_ID = IdentifierKind.PATIENT_ID
ACCESSION = IdentifierKind.ACCESSION_NUMBER


def one(value: Any) -> tuple[tuple[Any, ...], ...]:
    """A criterion of one group holding one value."""
    return ((value,),)


def patient_key(node: Node, patient_id: str) -> int:
    page = node.clinical_records.find_patients(
        PatientCriteria(identifiers=one(IdentifierMatch(PATIENT_ID, patient_id))), ADMIN
    )
    [found] = page.items
    return found.key


def audit_since(node: Node, sequence: int) -> list[tuple[str, str, str | None, str | None]]:
    with node.database.reading() as session:
        rows = session.execute(
            select(AuditEvent.event_id, AuditEvent.event_action, AuditEvent.patient_id,
                   AuditEvent.detail)
            .where(AuditEvent.sequence > sequence)
            .order_by(AuditEvent.sequence)
        ).all()  # fmt: skip
    return [tuple(row) for row in rows]  # type: ignore[misc]


def last_audit(node: Node) -> int:
    with node.database.reading() as session:
        return int(session.scalar(select(func.max(AuditEvent.sequence))) or 0)


def register(node: Node, number: int, name: str, born: date, sex: str | None = "F") -> None:
    node.patients.register(replace(child(number, name=name, birth_date=born), sex=sex), HIS)


def signed(node: Node, number: int, **kwargs: Any) -> str:
    accession = exam(node, number)
    node.reports.sign(accession, ReportDraft(FINDINGS_TEXT), RADIOLOGIST, is_final=True, **kwargs)
    return accession


def test_a_patient_is_read_with_every_identifier_and_the_read_is_audited(node: Node) -> None:
    node.patients.register(
        PatientRegistration(
            identifiers=(PatientIdentity("MRN6001", ISSUER, "MR"),
                         PatientIdentity("NHS-42", "NHS", "PI")),
            name="NGUYEN^LAN^MAI", birth_date=date(2019, 5, 20), sex="F",
            multiple_birth="Y", birth_order=2,
        ),
        HIS,
    )  # fmt: skip
    key = patient_key(node, "MRN6001")
    before = last_audit(node)
    patient = node.clinical_records.get_patient(str(key), ADMIN)
    assert [(i.identifier, i.issuer, i.type_code) for i in patient.identifiers] == [
        ("MRN6001", ISSUER, "MR"), ("NHS-42", "NHS", "PI")
    ]  # fmt: skip
    assert (patient.name, patient.birth_date, patient.sex) == (
        "NGUYEN^LAN^MAI", date(2019, 5, 20), "F"
    )  # fmt: skip
    assert (patient.birth_order, patient.merged_into, patient.replaces) == (2, None, ())
    [(event, action, patient_id, detail)] = audit_since(node, before)
    assert (event, action, patient_id) == ("110110", "R", "MRN6001")
    assert detail == f"FHIR Patient/{key} read"
    for missing in ("999999", "abc", "-1", "99999999999999999999999"):
        with pytest.raises(UnknownClinicalRecordError):
            node.clinical_records.get_patient(missing, ADMIN)


def test_patients_are_found_by_identifier_name_birth_date_and_sex(node: Node) -> None:
    register(node, 1, "NGUYEN^LAN", date(2019, 5, 20))
    register(node, 2, "NGUYEN^MINH", date(2021, 1, 3), sex="M")
    register(node, 3, "OKORO^CHIDI^LANRE", date(2016, 3, 2), sex=None)
    records = node.clinical_records

    def ids(**criteria: Any) -> list[str]:
        return [p.patient_id for p in records.find_patients(PatientCriteria(**criteria),
                                                            ADMIN).items]  # fmt: skip

    assert ids(identifiers=one(IdentifierMatch(PATIENT_ID, "MRN6002", ISSUER))) == ["MRN6002"]
    assert ids(identifiers=one(IdentifierMatch(PATIENT_ID, "MRN6002", "OTHER"))) == []
    assert ids(identifiers=one(IdentifierMatch(PATIENT_ID, "MRN6002", ""))) == []
    assert ids(identifiers=one(IdentifierMatch(PATIENT_ID, None, ISSUER))) == [
        "MRN6001", "MRN6002", "MRN6003"
    ]  # fmt: skip
    assert ids(names=one("ngu")) == ["MRN6001", "MRN6002"]
    assert ids(names=one("lan")) == ["MRN6001", "MRN6003"]  # a given or a middle name
    assert ids(families=one("lan")) == []
    assert ids(givens=one("MIN")) == ["MRN6002"]
    assert ids(names=(("nguyen",), ("lan",))) == ["MRN6001"]  # both must match
    assert ids(names=(("okoro", "minh"),)) == ["MRN6002", "MRN6003"]  # either
    assert ids(birth_dates=one(DateRange(date(2019, 1, 1), date(2019, 12, 31)))) == ["MRN6001"]
    assert ids(birth_dates=one(DateRange(None, date(2019, 5, 20)))) == ["MRN6001", "MRN6003"]
    assert ids(sexes=one("M")) == ["MRN6002"]
    assert ids(sexes=one(None)) == ["MRN6003"]
    assert ids(names=((),)) == []  # an empty group names nothing
    page = records.find_patients(PatientCriteria(offset=1, count=1), ADMIN)
    assert (page.total, [p.patient_id for p in page.items], page.has_more) == (
        3, ["MRN6002"], True
    )  # fmt: skip
    counted = records.find_patients(PatientCriteria(count=0), ADMIN)
    assert (counted.total, counted.items) == (3, ())


def test_a_merged_patient_is_left_out_of_searches_and_read_pointing_at_the_survivor(
    node: Node,
) -> None:
    register(node, 20, "LEFEVRE^ROSE", date(2026, 11, 20))
    exam(node, 21, patient=child(21, name="LEFEVRE^BABY GIRL", birth_date=date(2026, 11, 20)))
    prior = patient_key(node, "MRN6021")
    node.database.transaction(
        lambda session: merge_patients(session, child(20, name="LEFEVRE^ROSE"),
                                       PatientIdentity("MRN6021", ISSUER), HIS)
    )  # fmt: skip
    survivor = patient_key(node, "MRN6020")
    records = node.clinical_records
    found = records.find_patients(PatientCriteria(names=one("lefevre")), ADMIN)
    assert [p.key for p in found.items] == [survivor]
    assert records.get_patient(str(prior), ADMIN).merged_into == survivor
    assert records.get_patient(str(survivor), ADMIN).replaces == (prior,)
    orders = records.find_orders(OrderCriteria(patients=one(str(survivor))), ADMIN)
    assert [o.accession_number for o in orders.items] == ["E6021"]


def test_orders_are_found_by_patient_identifier_and_status(node: Node) -> None:
    first = exam(node, 1, priority=Priority.STAT)
    second = signed(node, 2)
    records = node.clinical_records
    key = patient_key(node, "MRN6001")

    def accessions(**criteria: Any) -> list[str]:
        page = records.find_orders(OrderCriteria(**criteria), ADMIN)
        return [order.accession_number for order in page.items]

    assert accessions() == [second, first]  # newest first
    assert accessions(patients=one(str(key))) == [first]
    assert accessions(patient_identifiers=one(IdentifierMatch(PATIENT_ID, "MRN6002"))) == [second]
    assert accessions(identifiers=one(IdentifierMatch(ACCESSION, first))) == [first]
    assert accessions(identifiers=one(IdentifierMatch(IdentifierKind.STUDY_INSTANCE_UID))) == []
    assert accessions(statuses=one(OrderStatus.REPORTED)) == [second]
    assert accessions(statuses=((OrderStatus.SCHEDULED, OrderStatus.ARRIVED),)) == [first]
    order = records.get_order(str(records.find_orders(OrderCriteria(), ADMIN).items[1].key),
                              ADMIN)  # fmt: skip
    assert (order.accession_number, order.priority, order.status) == (
        first, Priority.STAT, OrderStatus.ARRIVED
    )  # fmt: skip
    assert (order.reason, order.referring_physician) == ("Right iliac fossa pain", "OKAFOR^ADA")
    assert [p.description for p in order.procedures] == ["US abdomen"]
    assert (order.patient.key, order.patient.patient_id) == (key, "MRN6001")


def test_a_study_is_read_with_its_series_and_instances(node: Node) -> None:
    accession = exam(node, 1, images=3)
    other = exam(node, 2)
    uid = f"{UID_ROOT}.1"
    records = node.clinical_records
    before = last_audit(node)
    study = records.get_study(uid, ADMIN)
    [(event, action, patient_id, _)] = audit_since(node, before)
    assert (event, action, patient_id) == ("110103", "R", "MRN6001")
    assert (study.accession_number, study.modalities, study.number_of_instances) == (
        accession, ("US",), 3
    )  # fmt: skip
    [series] = study.series
    assert (series.modality, series.body_part_examined, series.number_of_instances) == (
        "US", "ABDOMEN", 3
    )  # fmt: skip
    assert len({i.sop_instance_uid for i in series.instances}) == 3
    assert series.instances[0].sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    order = records.find_orders(OrderCriteria(identifiers=one(IdentifierMatch(ACCESSION,
                                                                              accession))),
                                ADMIN).items[0]  # fmt: skip
    assert study.order_key == order.key

    def uids(**criteria: Any) -> list[str]:
        page = records.find_studies(StudyCriteria(**criteria), ADMIN)
        return [s.study_instance_uid for s in page.items]

    assert uids() == [f"{UID_ROOT}.2", uid]
    assert uids(identifiers=one(IdentifierMatch(ACCESSION, other))) == [f"{UID_ROOT}.2"]
    assert uids(identifiers=one(IdentifierMatch(IdentifierKind.STUDY_INSTANCE_UID, uid))) == [uid]
    assert uids(orders=one(str(order.key))) == [uid]
    assert uids(study_dates=one(DateRange(date(2004, 1, 19), date(2004, 1, 19)))) == [
        f"{UID_ROOT}.2", uid
    ]  # fmt: skip
    assert uids(study_dates=one(DateRange(date(2005, 1, 1)))) == []
    for missing in ("1.2.3", "1.2\x00", "x" * 100):
        with pytest.raises(UnknownClinicalRecordError):
            records.get_study(missing, ADMIN)


def test_reports_are_shown_once_released_as_of_their_newest_released_version(
    node: Node,
) -> None:
    accession = exam(node, 1)
    records = node.clinical_records
    draft = node.reports.save(accession, ReportDraft(FINDINGS_TEXT), RADIOLOGIST)
    assert records.find_reports(ReportCriteria(), ADMIN).total == 0
    with pytest.raises(UnknownClinicalRecordError):
        records.get_report(str(draft.id), ADMIN)
    preliminary = node.reports.sign(
        accession, ReportDraft({**FINDINGS_TEXT, "impression": "Probable appendicitis."},
                               revision=draft.revision),
        RADIOLOGIST, is_final=False,
    )  # fmt: skip
    # Edited again after the preliminary signature: the text shown is still the signed one.
    node.reports.save(
        accession,
        ReportDraft({**FINDINGS_TEXT, "impression": "Unsigned"}, revision=preliminary.revision),
        RADIOLOGIST,
    )
    report = records.get_report(str(draft.id), ADMIN)
    assert (report.status, report.impression, report.signed_by) == (
        ReportStatus.PRELIMINARY, "Probable appendicitis.", "dr.reed"
    )  # fmt: skip
    assert report.study_instance_uids == (f"{UID_ROOT}.1",)
    assert ("Findings", FINDINGS_TEXT["findings"]) in report.sections


def test_final_reports_carry_their_critical_finding_and_addenda(node: Node) -> None:
    first = signed(node, 1, critical_finding="Perforated appendix")
    second = signed(node, 2)
    node.reports.add_addendum(second, "Free fluid in the pelvis.", RADIOLOGIST)
    records = node.clinical_records

    def accessions(**criteria: Any) -> list[str]:
        return [r.accession_number for r in records.find_reports(ReportCriteria(**criteria),
                                                                 ADMIN).items]  # fmt: skip

    assert accessions() == [second, first]
    assert accessions(statuses=one(ReportStatus.FINAL)) == [first]
    assert accessions(statuses=((ReportStatus.FINAL, ReportStatus.AMENDED),)) == [second, first]
    assert accessions(identifiers=one(IdentifierMatch(ACCESSION, second))) == [second]
    assert accessions(patient_identifiers=one(IdentifierMatch(PATIENT_ID, "MRN6001"))) == [first]
    final, amended = records.find_reports(ReportCriteria(identifiers=(
        (IdentifierMatch(ACCESSION, first), IdentifierMatch(ACCESSION, second)),)),
        ADMIN).items[::-1]  # fmt: skip
    assert accessions(orders=one(str(final.order_key))) == [first]
    assert (final.critical_finding, final.impression) == (
        "Perforated appendix", "Acute appendicitis."
    )  # fmt: skip
    assert (amended.status, [a.text for a in amended.addenda]) == (
        ReportStatus.AMENDED, ["Free fluid in the pelvis."]
    )  # fmt: skip
    before = last_audit(node)
    records.get_report(str(final.key), ADMIN)
    [(event, action, patient_id, _)] = audit_since(node, before)
    assert (event, action, patient_id) == ("110111", "R", "MRN6001")


def test_a_clinician_finds_only_the_children_in_their_care(node: Node) -> None:
    mine = signed(node, 1)
    theirs = signed(node, 2)
    records = node.clinical_records
    others = patient_key(node, "MRN6002")
    before = last_audit(node)
    assert [p.patient_id for p in records.find_patients(PatientCriteria(), CLINICIAN).items] == [
        "MRN6001"
    ]
    assert [o.accession_number for o in records.find_orders(OrderCriteria(), CLINICIAN).items] == [
        mine
    ]
    assert records.find_studies(StudyCriteria(), CLINICIAN).total == 1
    assert records.find_reports(ReportCriteria(), CLINICIAN).total == 1
    audited = audit_since(node, before)
    assert [(event, patient_id) for event, _, patient_id, _ in audited] == [
        ("110112", "MRN6001")
    ] * 4
    assert "FHIR Patient search" in str(audited[0][3])
    theirs_order = records.find_orders(OrderCriteria(identifiers=one(IdentifierMatch(
        ACCESSION, theirs))), ADMIN).items[0]  # fmt: skip
    theirs_report = records.find_reports(ReportCriteria(orders=one(str(theirs_order.key))),
                                         ADMIN).items[0]  # fmt: skip
    with pytest.raises(UnknownClinicalRecordError):
        records.get_patient(str(others), CLINICIAN)
    with pytest.raises(UnknownClinicalRecordError):
        records.get_order(str(theirs_order.key), CLINICIAN)
    with pytest.raises(UnknownClinicalRecordError):
        records.get_study(f"{UID_ROOT}.2", CLINICIAN)
    with pytest.raises(UnknownClinicalRecordError):
        records.get_report(str(theirs_report.key), CLINICIAN)
