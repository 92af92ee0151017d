"""A small paediatric worklist, scheduled through the RIS services as the HL7 door or the orders
page would: a few stations, modalities and days, a STAT and an ASAP order, an order whose one
procedure has two steps, a newborn, a name outside ASCII and a cancelled order. And `us_abdomen`,
the one-step order the RIS tests place for patients of their own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from pedipacs.db.engine import Database
from pedipacs.model.origin import Origin
from pedipacs.model.ris import (
    OrderRequest,
    OrderSummary,
    PatientIdentity,
    PatientRegistration,
    Priority,
    ProcedureRequest,
    ScheduledStepRequest,
)
from pedipacs.ris.orders import OrderService
from pedipacs.ris.patients import PatientService

HIS = Origin.cli("his")
ISSUER = "CHILDRENS"

NGUYEN = PatientRegistration(
    identifiers=(PatientIdentity("MRN2001", ISSUER, "MR"),),
    name="NGUYEN^LAN",
    birth_date=date(2025, 5, 20),
    sex="F",
)
OKORO = PatientRegistration(
    identifiers=(PatientIdentity("MRN2002", ISSUER, "MR"),),
    name="OKORO^CHIDI^EMEKA",
    birth_date=date(2016, 3, 2),
    sex="M",
)
NEWBORN = PatientRegistration(
    identifiers=(PatientIdentity("T-2003", ISSUER, "PI"),),
    name="LEFEVRE^BABY GIRL",
    birth_date=date(2026, 11, 20),
    sex="F",
    is_temporary=True,
)
MULLER = PatientRegistration(
    identifiers=(PatientIdentity("MRN2004", ISSUER, "MR"),),
    name="MÜLLER^LENA",
    birth_date=date(2020, 7, 15),
    sex="F",
)
PATIENTS = (NGUYEN, OKORO, NEWBORN, MULLER)


@dataclass(frozen=True)
class Step:
    step_id: str
    modality: str
    station_ae_title: str
    station_name: str
    start: datetime
    description: str
    performing_physician: str | None = None


def _order(
    patient: PatientRegistration,
    accession: str,
    description: str,
    steps: tuple[Step, ...],
    *,
    priority: Priority = Priority.ROUTINE,
    weight: str | None = None,
    reason: str | None = None,
    study_instance_uid: str | None = None,
    code: tuple[str, str, str] | None = None,
) -> OrderRequest:
    code_value, coding_scheme, code_meaning = code or (None, None, None)
    return OrderRequest(
        patient=patient.primary,
        accession_number=accession,
        priority=priority,
        placer_order_number=f"PL{accession}",
        reason=reason,
        referring_physician="OKAFOR^ADA",
        patient_weight=weight,
        procedures=(
            ProcedureRequest(
                requested_procedure_id=f"RP{accession[1:]}",
                description=description,
                code_value=code_value,
                coding_scheme=coding_scheme,
                code_meaning=code_meaning,
                study_instance_uid=study_instance_uid,
                steps=tuple(
                    ScheduledStepRequest(
                        step_id=s.step_id,
                        modality=s.modality,
                        station_ae_title=s.station_ae_title,
                        station_name=s.station_name,
                        start=s.start,
                        description=s.description,
                        performing_physician=s.performing_physician,
                    )
                    for s in steps
                ),
            ),
        ),
    )


ORDERS = (
    _order(
        NGUYEN,
        "A1001",
        "US abdomen",
        (
            Step("S1001", "US", "US_ED_1", "ED US 1", datetime(2026, 11, 25, 9, 30), "US abdomen",
                 "BAKER^SAM"),
        ),
        priority=Priority.STAT,
        weight="11.2",
        reason="Suspected intussusception",
        study_instance_uid="2.25.1001",
        code=("RPID1001", "99PEDI", "US abdomen, paediatric"),
    ),
    _order(
        OKORO,
        "A1002",
        "CT head",
        (Step("S1002", "CT", "CT_MAIN", "CT 1", datetime(2026, 11, 25, 14, 0), "CT head plain"),),
        weight="32",
        reason="Head injury",
        study_instance_uid="2.25.1002",
    ),
    _order(
        NEWBORN,
        "A1003",
        "US hips",
        (Step("S1003", "US", "US_ED_1", "ED US 1", datetime(2026, 11, 26, 8, 15), "US hips"),),
        priority=Priority.ASAP,
        weight="3.4",
        reason="Breech birth",
    ),
    _order(
        MULLER,
        "A1004",
        "XR chest",
        (Step("S1004", "DX", "DX_WARD", "Ward DX", datetime(2026, 11, 27, 11, 0), "XR chest PA"),),
        weight="19",
        study_instance_uid="2.25.1004",
    ),
    _order(
        NGUYEN,
        "A1005",
        "US abdomen follow-up",
        (Step("S1005", "US", "US_ED_1", "ED US 1", datetime(2026, 11, 25, 16, 0), "US abdomen"),),
        study_instance_uid="2.25.1005",
    ),
    _order(
        MULLER,
        "A1006",
        "US and XR wrist",
        (
            Step("S1006A", "US", "US_ED_2", "ED US 2", datetime(2026, 11, 26, 13, 0), "US wrist"),
            Step("S1006B", "DX", "DX_WARD", "Ward DX", datetime(2026, 11, 26, 13, 30), "XR wrist"),
        ),
        study_instance_uid="2.25.1006",
    ),
)  # fmt: skip
CANCELLED = "A1005"


def us_abdomen(
    patient: PatientIdentity, accession_number: str, study_instance_uid: str | None = None
) -> OrderRequest:
    """An order of one procedure (RP1, US abdomen) with one step: SPS1, US on US_ED_1, on
    25 November 2026 at 10:30. Without a Study Instance UID the RIS makes one up."""
    return OrderRequest(
        patient=patient,
        accession_number=accession_number,
        procedures=(
            ProcedureRequest(
                requested_procedure_id="RP1",
                description="US abdomen",
                study_instance_uid=study_instance_uid,
                steps=(
                    ScheduledStepRequest(
                        step_id="SPS1",
                        modality="US",
                        station_ae_title="US_ED_1",
                        start=datetime(2026, 11, 25, 10, 30),
                    ),
                ),
            ),
        ),
    )


def schedule(patients: PatientService, orders: OrderService) -> dict[str, OrderSummary]:
    """Register the patients, place the orders and cancel one; the orders by accession number."""
    for patient in PATIENTS:
        patients.register(patient, HIS)
    placed = {order.accession_number: orders.place(order, HIS) for order in ORDERS}
    placed[CANCELLED] = orders.cancel(CANCELLED, HIS, reason="booked twice")
    return placed


def schedule_on(database_url: str) -> dict[str, OrderSummary]:
    """`schedule` on a running server's database, as its services would."""
    database = Database(database_url)
    try:
        return schedule(PatientService(database), OrderService(database))
    finally:
        database.dispose()
