"""Frozen values that services return."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


class DimseOperation(StrEnum):
    """What a peer may ask of pedipacs over DIMSE (the peer registry grants each one)."""

    ECHO = "echo"
    STORE = "store"
    FIND = "find"
    MOVE = "move"
    GET = "get"
    WORKLIST = "worklist"  # Modality Worklist C-FIND and MPPS

    @classmethod
    def parse_list(cls, text: str) -> frozenset[DimseOperation]:
        """`store,find` -> the operations, with echo; an unknown name is refused.

        >>> sorted(str(operation) for operation in DimseOperation.parse_list("find, store"))
        ['echo', 'find', 'store']
        """
        names = [name.strip().lower() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in cls._value2member_map_]
        if unknown:
            allowed = ", ".join(member.value for member in cls)
            raise ValueError(f"unknown operation(s) {', '.join(unknown)}; choose from {allowed}")
        return frozenset(cls(name) for name in names) | {cls.ECHO}


# A registered peer may do everything unless told otherwise; echo is always allowed.
DEFAULT_PEER_OPERATIONS = frozenset(DimseOperation)


class StoreOutcome(StrEnum):
    """What the ingest service did with an object."""

    STORED = "STORED"
    DUPLICATE_IGNORED = "DUPLICATE_IGNORED"  # identical bytes already stored
    REPLACED = "REPLACED"  # different content, policy keep-newest
    CONFLICT_KEPT_STORED = "CONFLICT_KEPT_STORED"  # different content, policy keep-first


@dataclass(frozen=True, slots=True)
class StoredInstance:
    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    size: int
    sha256: str
    outcome: StoreOutcome


AttributeValues = Mapping[str, str | list[str] | None]


@dataclass(frozen=True, slots=True)
class QueryMatch:
    """One entity matching a query: DICOM keyword -> value (str, list of str, or None).

    `items` holds the items of the sequences asked for, by the sequence's keyword (a worklist
    item's Scheduled Procedure Step Sequence); a sequence asked for but absent has no items.
    """

    values: AttributeValues
    items: Mapping[str, tuple[AttributeValues, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PatientDemographics:
    """The patient an answer must carry when it is no longer the one the stored file names
    (after a merge or a change of identifier): the index's patient, not the file's."""

    patient_id: str
    issuer_of_patient_id: str
    patient_name: str | None
    birth_date: date | None
    sex: str | None


@dataclass(frozen=True, slots=True)
class InstanceLocation:
    """Where a stored instance's bytes are, for retrieval."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    blob_key: str
    size: int
    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    # Set when the patient changed after the images came: answers carry it instead.
    corrected_patient: PatientDemographics | None = None


@dataclass(frozen=True, slots=True)
class InstanceMetadata:
    """A stored instance and its DICOM JSON metadata (bulk data URIs still marked)."""

    location: InstanceLocation
    dicom_json: str


@dataclass(frozen=True, slots=True)
class Peer:
    """A known remote Application Entity and the DICOM operations it may ask of pedipacs."""

    name: str
    ae_title: str
    host: str
    port: int
    created_at: datetime | None = None
    allowed_operations: frozenset[DimseOperation] = DEFAULT_PEER_OPERATIONS
