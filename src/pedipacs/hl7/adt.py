"""ADT: patient registration and updates (A01, A04, A05, A08, A28, A31), from the PID segment
to `ris.patients.register_patient` (create, or update the patient known by any identifier).

PID fields read:

- PID-3 (CX, repeating): every repetition is an identifier; the first is the primary one (the
  Patient ID the worklist and the images carry). CX-1 the ID, CX-4 the assigning authority
  (its namespace ID, else its universal ID) as the issuer, CX-5 the identifier type code.
- PID-5 (XPN, repeating): the legal name (XPN-7 `L`), else the first; written in DICOM PN
  order `FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX` from XPN-1.1, -2, -3, -5, -4 (the degree is left).
- PID-7 birth date and time; PID-8 sex (table 0001: F, M kept; O, A, X -> O; U, N -> none).
- PID-21 mother's identifier (first repetition), PID-24 multiple birth (Y/N), PID-25 birth
  order: what ties a newborn to their mother.
- A temporary identity (a newborn or an unknown patient before the permanent number): PID-31
  Identity Unknown Indicator `Y`, or a primary identifier of type `TMP` (site convention) or
  `ANON` (table 0203, anonymous identifier).

Changes of identity (`ris.identity`):

- A40 merge: each PID/MRG pair merges the patient of MRG-1 (the prior identifier, its first
  repetition) into the patient of the PID (registered or updated first). Orders and studies
  follow; answers then carry the surviving identity. Pairs apply in order, all or none.
- A47 change of identifier: the identifier of MRG-1 becomes the PID-3 identifier (its first
  repetition) for the same patient, whose other PID fields are updated as in A08.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from pedipacs.hl7.messages import (
    ErrorCode,
    Hl7ContentError,
    Location,
    Message,
    Repetition,
    Segment,
    only_segment,
    part,
)
from pedipacs.hl7.values import checked_text, person_name, timestamp_from_dtm
from pedipacs.model.origin import Origin
from pedipacs.model.ris import PatientIdentity, PatientRegistration
from pedipacs.ris.identity import change_identifier, merge_patients
from pedipacs.ris.patients import register_patient

# The work a message asks for, applied at most once by the inbox in one transaction.
Work = Callable[[Session], str | None]

REGISTRATION_EVENTS = frozenset({"A01", "A04", "A05", "A08", "A28", "A31"})
TEMPORARY_TYPE_CODES = frozenset({"TMP", "ANON"})
SEX_FROM_HL7 = {"F": "F", "M": "M", "O": "O", "A": "O", "X": "O", "U": None, "N": None}
MAX_IDENTIFIER = 64
MAX_TYPE_CODE = 16
MAX_BIRTH_ORDER = 99


def handle_adt_registration(message: Message, origin: Origin) -> Work:
    """ADT^A01/A04/A05/A08/A28/A31: register or update the patient of the PID segment."""
    pid = only_segment(message, "PID")
    assert pid is not None
    registration = registration_from_pid(pid)

    def apply(session: Session) -> str:
        register_patient(session, registration, origin)
        return f"patient {_label(registration.primary)} recorded"

    return apply


def handle_adt_merge(message: Message, origin: Origin) -> Work:
    """ADT^A40: merge the patient of each MRG into the patient of the PID before it."""
    pairs = [(registration_from_pid(pid), _prior(mrg)) for pid, mrg in _pid_mrg_pairs(message)]

    def apply(session: Session) -> str:
        done = []
        for survivor, prior in pairs:
            outcome = merge_patients(session, survivor, prior, origin)
            done.append(
                f"patient {_label(outcome.prior)} already merged into {_label(outcome.survivor)}"
                if outcome.already_merged
                else f"patient {_label(outcome.prior)} merged into {_label(outcome.survivor)} "
                f"({outcome.studies_moved} studies, {outcome.orders_moved} orders)"
            )
        return "; ".join(done)

    return apply


def handle_adt_change_identifier(message: Message, origin: Origin) -> Work:
    """ADT^A47: the identifier of MRG-1 is replaced by the first of PID-3."""
    [(pid, mrg)] = _pid_mrg_pairs(message, at_most_one=True)
    registration = registration_from_pid(pid)
    prior = _prior(mrg)

    def apply(session: Session) -> str:
        change_identifier(session, prior, registration.primary, origin, registration)
        return f"identifier {_label(prior)} changed to {_label(registration.primary)}"

    return apply


def _pid_mrg_pairs(message: Message, *, at_most_one: bool = False) -> list[tuple[Segment, Segment]]:
    """Each MRG with the PID before it (ADT_A39 repeats the pair; ADT_A30 has one)."""
    pairs: list[tuple[Segment, Segment]] = []
    pid: Segment | None = None
    for segment in message:
        if segment.name == "PID":
            pid = segment
        elif segment.name == "MRG":
            if pid is None:
                raise Hl7ContentError(
                    "MRG without a PID before it",
                    segment.location(1),
                    ErrorCode.SEGMENT_SEQUENCE_ERROR,
                )
            pairs.append((pid, segment))
            pid = None
    if not pairs:
        raise Hl7ContentError(
            "the message has no MRG segment: which patient is merged or changed?",
            Location("MRG", 1, 1),
            ErrorCode.REQUIRED_FIELD_MISSING,
        )
    if at_most_one and len(pairs) > 1:
        raise Hl7ContentError(
            "one PID/MRG pair is expected",
            pairs[1][1].location(1),
            ErrorCode.SEGMENT_SEQUENCE_ERROR,
        )
    return pairs


def _prior(mrg: Segment) -> PatientIdentity:
    """MRG-1, the prior patient identifier (its first repetition)."""
    repetitions = mrg.repetitions(1)
    prior = (
        identity_from_cx(repetitions[0], mrg.location(1), "prior patient identifier")
        if repetitions
        else None
    )
    if prior is None:
        raise Hl7ContentError(
            "MRG-1 is empty: the prior patient identifier is required",
            mrg.location(1),
            ErrorCode.REQUIRED_FIELD_MISSING,
        )
    return prior


def registration_from_pid(pid: Segment) -> PatientRegistration:
    """The patient a PID segment describes; AE naming the field for what cannot be kept."""
    identifiers = tuple(
        identity
        for repetition in pid.repetitions(3)
        if (identity := identity_from_cx(repetition, pid.location(3), "patient identifier"))
    )
    if not identifiers:
        raise Hl7ContentError(
            "PID-3 is empty: the patient has no identifier",
            pid.location(3),
            ErrorCode.REQUIRED_FIELD_MISSING,
        )
    mothers = pid.repetitions(21)
    mother = (
        identity_from_cx(mothers[0], pid.location(21), "mother's identifier") if mothers else None
    )
    birth = timestamp_from_dtm(pid.value(7), pid.location(7), "birth date")
    return PatientRegistration(
        identifiers=identifiers,
        name=_patient_name(pid),
        birth_date=birth.date if birth else None,
        birth_time=birth.time if birth else None,
        sex=_sex(pid),
        mother=mother,
        multiple_birth=_multiple_birth(pid),
        birth_order=_birth_order(pid),
        is_temporary=pid.value(31).upper() == "Y"
        or (identifiers[0].type_code or "") in TEMPORARY_TYPE_CODES,
    )


def identity_from_cx(
    repetition: Repetition, location: Location, what: str
) -> PatientIdentity | None:
    """An identifier from a CX value: CX-1 the ID, CX-4 its assigning authority (namespace ID,
    else universal ID) as the issuer, CX-5 the type code; None when CX-1 is empty."""
    identifier = checked_text(part(repetition, 1), location.at(1), what, MAX_IDENTIFIER)
    if identifier is None:
        return None
    if "\\" in identifier:
        raise Hl7ContentError(f"{location}: the {what} holds a backslash", location.at(1))
    issuer = part(repetition, 4, 1) or part(repetition, 4, 2)
    type_code = part(repetition, 5).upper()
    return PatientIdentity(
        identifier,
        checked_text(issuer, location.at(4), f"{what}'s issuer", MAX_IDENTIFIER) or "",
        checked_text(type_code, location.at(5), f"{what}'s type code", MAX_TYPE_CODE),
    )


def _patient_name(pid: Segment) -> str | None:
    names = pid.repetitions(5)
    if not names:
        return None
    legal = next((n for n in names if part(n, 7).upper() == "L"), names[0])
    return name_from_xpn(legal, pid.location(5), "patient name")


def name_from_xpn(name: Repetition, location: Location, what: str) -> str | None:
    """XPN (family^given^middle^suffix^prefix^degree) as DICOM PN."""
    return person_name(
        part(name, 1, 1), part(name, 2), part(name, 3), part(name, 5), part(name, 4), location, what
    )


def _sex(pid: Segment) -> str | None:
    value = pid.value(8).upper()
    if not value:
        return None
    if value not in SEX_FROM_HL7:
        raise Hl7ContentError(
            f"PID-8: sex {value[:8]!r} is not in HL7 table 0001 (F, M, O, U, A, N, X)",
            pid.location(8),
            ErrorCode.TABLE_VALUE_NOT_FOUND,
        )
    return SEX_FROM_HL7[value]


def _multiple_birth(pid: Segment) -> str | None:
    value = pid.value(24).upper()
    if value and value not in ("Y", "N"):
        raise Hl7ContentError(
            f"PID-24: multiple birth indicator {value[:8]!r} is not Y or N",
            pid.location(24),
            ErrorCode.TABLE_VALUE_NOT_FOUND,
        )
    return value or None


def _birth_order(pid: Segment) -> int | None:
    value = pid.value(25)
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or not 0 < int(value) <= MAX_BIRTH_ORDER:
        raise Hl7ContentError(
            f"PID-25: birth order {value[:8]!r} is not a number from 1 to {MAX_BIRTH_ORDER}",
            pid.location(25),
        )
    return int(value)


def _label(identity: PatientIdentity) -> str:
    """`T-77 (CHILDRENS)`: an identifier for an acknowledgement's text, without delimiters."""
    return f"{identity.identifier} ({identity.issuer})" if identity.issuer else identity.identifier
