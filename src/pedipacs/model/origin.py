"""Where a request came from: passed along with every service call, recorded by the audit trail."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Door(StrEnum):
    """The protocol a request came in through."""

    DIMSE = "DIMSE"
    HTTP = "HTTP"
    HL7 = "HL7"
    CLI = "CLI"
    JOB = "JOB"


@dataclass(frozen=True, slots=True)
class Origin:
    """Who asked, through which door, from where."""

    door: Door
    user: str | None = None
    remote_host: str | None = None
    remote_ae: str | None = None
    called_ae: str | None = None
    # The patients the asker may see (a referring clinician's care, plus break-the-glass
    # accesses); None: every patient. Services filter queries and refuse retrieves by it.
    patient_scope: frozenset[str] | None = None

    @classmethod
    def dimse(cls, remote_ae: str, called_ae: str, remote_host: str) -> Origin:
        return cls(Door.DIMSE, remote_ae=remote_ae, called_ae=called_ae, remote_host=remote_host)

    @classmethod
    def http(cls, user: str | None, remote_host: str | None) -> Origin:
        return cls(Door.HTTP, user=user, remote_host=remote_host)

    def sees(self, patient_id: str) -> bool:
        return self.patient_scope is None or patient_id in self.patient_scope

    @classmethod
    def cli(cls, user: str) -> Origin:
        return cls(Door.CLI, user=user, remote_host="localhost")

    @classmethod
    def job(cls, name: str) -> Origin:
        return cls(Door.JOB, user=name)

    @property
    def who(self) -> str:
        """A short human label: the user, else the calling AE title."""
        return self.user or self.remote_ae or "unknown"
