"""Tables, one module per aggregate. Importing this package registers them all on Base.metadata."""

from pedipacs.db.tables.account import (
    AuditExportCursor,
    BreakGlassAccess,
    CareTeamMember,
    UserAccount,
    UserSession,
)
from pedipacs.db.tables.audit import AuditChainHead, AuditEvent
from pedipacs.db.tables.change import Change
from pedipacs.db.tables.job import Job
from pedipacs.db.tables.patient import Patient
from pedipacs.db.tables.peer import PeerRow
from pedipacs.db.tables.report import (
    CriticalResult,
    ReadingClaim,
    Report,
    ReportTemplateRow,
    ReportVersion,
)
from pedipacs.db.tables.ris import (
    CommitmentRequest,
    Hl7MessageRecord,
    ImageException,
    ImagingOrder,
    PatientIdentifier,
    PerformedStep,
    RequestedProcedure,
    ScheduledStep,
)
from pedipacs.db.tables.study import Instance, InstanceConflict, InstanceMetadata, Series, Study

__all__ = [
    "AuditChainHead",
    "AuditEvent",
    "AuditExportCursor",
    "BreakGlassAccess",
    "CareTeamMember",
    "Change",
    "CommitmentRequest",
    "CriticalResult",
    "Hl7MessageRecord",
    "ImageException",
    "ImagingOrder",
    "Instance",
    "InstanceConflict",
    "InstanceMetadata",
    "Job",
    "Patient",
    "PatientIdentifier",
    "PeerRow",
    "PerformedStep",
    "ReadingClaim",
    "Report",
    "ReportTemplateRow",
    "ReportVersion",
    "RequestedProcedure",
    "ScheduledStep",
    "Series",
    "Study",
    "UserAccount",
    "UserSession",
]
