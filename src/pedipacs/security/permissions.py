"""Roles and the permissions they grant: the one table every door's check reads.

A person's roles come from their account (or their identity provider); a DICOM peer's
permissions come from the operations the peer registry grants it. Either way the check is
`AccessPolicy.require(principal, permission, origin)` in `security/access.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from pedipacs.model.records import DimseOperation


class Permission(StrEnum):
    SEARCH = "search"  # C-FIND, QIDO-RS, patient and study lists
    RETRIEVE = "retrieve"  # C-GET, WADO-RS/URI, the viewer
    SEND = "send"  # C-MOVE: send images on to another registered AE
    STORE = "store"  # C-STORE, STOW-RS, imports
    WORKLIST = "worklist"  # Modality Worklist, MPPS
    MANAGE_ORDERS = "manage-orders"
    REPORT = "report"  # the reading worklist; write and sign reports
    ACKNOWLEDGE_RESULTS = "acknowledge-results"  # confirm a critical result was received
    MONITOR = "monitor"  # turnaround times and the exams past their target
    READ_AUDIT = "read-audit"
    ADMINISTER = "administer"  # accounts, roles, peers, care teams, break-the-glass review
    BREAK_GLASS = "break-glass"  # open a patient outside one's care, with a reason


class Role(StrEnum):
    ADMINISTRATOR = "administrator"
    RADIOLOGIST = "radiologist"
    TECHNOLOGIST = "technologist"
    REFERRING_CLINICIAN = "referring-clinician"
    AUDITOR = "auditor"

    @classmethod
    def parse_list(cls, text: str) -> frozenset[Role]:
        """`radiologist, auditor` -> the roles; an unknown name is refused.

        >>> sorted(Role.parse_list("auditor,radiologist"))
        [<Role.AUDITOR: 'auditor'>, <Role.RADIOLOGIST: 'radiologist'>]
        """
        names = [name.strip().lower() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in cls._value2member_map_]
        if unknown or not names:
            allowed = ", ".join(member.value for member in cls)
            raise ValueError(
                f"unknown or missing role(s) {', '.join(unknown)}; choose from {allowed}"
            )
        return frozenset(cls(name) for name in names)


_IMAGING = {Permission.SEARCH, Permission.RETRIEVE}
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    # The PACS administrator fixes studies and routes images, so sees them; every such access
    # is on the audit trail like anyone else's.
    Role.ADMINISTRATOR: frozenset(
        {*_IMAGING, Permission.SEND, Permission.STORE, Permission.WORKLIST,
         Permission.MANAGE_ORDERS, Permission.READ_AUDIT, Permission.ADMINISTER,
         Permission.MONITOR}
    ),
    Role.RADIOLOGIST: frozenset(
        {*_IMAGING, Permission.SEND, Permission.REPORT, Permission.ACKNOWLEDGE_RESULTS,
         Permission.MONITOR}
    ),
    Role.TECHNOLOGIST: frozenset(
        {*_IMAGING, Permission.STORE, Permission.WORKLIST, Permission.MANAGE_ORDERS}
    ),
    # Sees the patients in their care only (AccessPolicy.patient_scope), others by breaking
    # the glass.
    Role.REFERRING_CLINICIAN: frozenset(
        {*_IMAGING, Permission.BREAK_GLASS, Permission.ACKNOWLEDGE_RESULTS}
    ),
    Role.AUDITOR: frozenset({Permission.READ_AUDIT}),
}  # fmt: skip
# Roles whose holders see every patient; anyone else only those in their care.
ROLES_SEEING_EVERY_PATIENT = frozenset(
    {Role.ADMINISTRATOR, Role.RADIOLOGIST, Role.TECHNOLOGIST, Role.AUDITOR}
)

PEER_OPERATION_PERMISSIONS: dict[DimseOperation, Permission] = {
    DimseOperation.FIND: Permission.SEARCH,
    DimseOperation.GET: Permission.RETRIEVE,
    DimseOperation.MOVE: Permission.SEND,
    DimseOperation.STORE: Permission.STORE,
    DimseOperation.WORKLIST: Permission.WORKLIST,
}


class PrincipalKind(StrEnum):
    USER = "user"
    PEER = "peer"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking, once authenticated: a signed-in person or a registered DICOM peer."""

    kind: PrincipalKind
    name: str  # username or calling AE title
    permissions: frozenset[Permission]
    roles: frozenset[Role] = frozenset()
    user_id: int | None = None
    display_name: str | None = None
    # Set for a page session: the CSRF token its state-changing requests must carry.
    csrf_token: str | None = None
    # A user restricted to the patients in their care (see ROLES_SEEING_EVERY_PATIENT).
    sees_every_patient: bool = True

    @classmethod
    def user(cls, user_id: int, username: str, roles: Iterable[Role], **extra: object) -> Principal:
        role_set = frozenset(roles)
        permissions = frozenset(p for role in role_set for p in ROLE_PERMISSIONS[role])
        return cls(
            PrincipalKind.USER,
            username,
            permissions,
            roles=role_set,
            user_id=user_id,
            sees_every_patient=bool(role_set & ROLES_SEEING_EVERY_PATIENT),
            **extra,  # type: ignore[arg-type]
        )

    @classmethod
    def peer(cls, ae_title: str, operations: Iterable[DimseOperation]) -> Principal:
        permissions = frozenset(
            PEER_OPERATION_PERMISSIONS[op] for op in operations if op in PEER_OPERATION_PERMISSIONS
        )
        return cls(PrincipalKind.PEER, ae_title, permissions)

    def may(self, permission: Permission) -> bool:
        return permission in self.permissions
