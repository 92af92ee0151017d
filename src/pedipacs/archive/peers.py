"""PeerService: the registry of known remote Application Entities."""

from __future__ import annotations

import logging

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError, OperationalError

from pedipacs.db.engine import Database
from pedipacs.db.tables import PeerRow
from pedipacs.errors import (
    InvalidInput,
    OperationNotPermittedError,
    PedipacsError,
    PeerExistsError,
    StorageUnavailable,
    UnknownCallingAeError,
    UnknownPeerError,
)
from pedipacs.model.origin import Door, Origin
from pedipacs.model.records import DEFAULT_PEER_OPERATIONS, DimseOperation, Peer
from pedipacs.security.access import AccessPolicy, NotPermittedError
from pedipacs.security.audit import AuditEventId, AuditRecord, record
from pedipacs.security.permissions import PEER_OPERATION_PERMISSIONS, Principal

log = logging.getLogger(__name__)
# DICOM PS3.16 CID 403 (Security Alert Type).
NODE_AUTHENTICATION = "(110126, DCM, Node Authentication)"


def _peer(row: PeerRow) -> Peer:
    return Peer(
        name=row.name,
        ae_title=row.ae_title,
        host=row.host,
        port=row.port,
        created_at=row.created_at,
        allowed_operations=_operations(row.allowed_operations),
    )


def _operations(text: str) -> frozenset[DimseOperation]:
    # Names this version does not know (a newer one wrote them) grant nothing.
    return frozenset(
        DimseOperation(name)
        for name in text.split(",")
        if name in DimseOperation._value2member_map_
    )


def _operations_text(operations: frozenset[DimseOperation]) -> str:
    return ",".join(sorted({*operations, DimseOperation.ECHO}))


class PeerService:
    def __init__(
        self,
        database: Database,
        access: AccessPolicy,
        *,
        accept_unknown_calling_aes: bool = False,
    ) -> None:
        self._database = database
        self._access = access
        self._accept_unknown_calling_aes = accept_unknown_calling_aes

    def admit(self, origin: Origin) -> Principal:
        """Who the calling AE of a new association is, with the operations it was granted.

        An AE the registry does not know is refused (UnknownCallingAeError, audited) unless
        unknown AEs are accepted, in which case it may do everything.
        """
        ae_title = origin.remote_ae or ""
        granted = self.operations_for(ae_title)
        if granted is not None:
            return Principal.peer(ae_title, granted)
        if self._accept_unknown_calling_aes:
            return Principal.peer(ae_title, DEFAULT_PEER_OPERATIONS)
        self._access.record_refusal(
            origin, f"association from unknown calling AE {origin.remote_ae}"
        )
        raise UnknownCallingAeError(f"calling AE {origin.remote_ae!r} is not a registered peer")

    def require(self, principal: Principal, operation: DimseOperation, origin: Origin) -> None:
        """Raise a PermissionDenied (audited by the access policy) unless the peer was granted
        `operation`."""
        permission = PEER_OPERATION_PERMISSIONS.get(operation)
        if permission is None:  # echo: always allowed
            return
        try:
            self._access.require(principal, permission, origin)
        except NotPermittedError as error:
            raise OperationNotPermittedError(
                f"{origin.remote_ae} is not allowed to {operation} "
                "(see `pedipacs peer add --allow`)"
            ) from error

    def add(self, peer: Peer, origin: Origin) -> Peer:
        ae_title = peer.ae_title.strip()
        if not 0 < len(ae_title) <= 16 or "\\" in ae_title or not ae_title.isascii():
            raise InvalidInput(f"AE title {peer.ae_title!r} must have 1 to 16 ASCII characters")
        if not 0 < peer.port < 65536:
            raise InvalidInput(f"port {peer.port} is out of range")
        try:
            with self._database.unit_of_work() as session:
                row = PeerRow(
                    name=peer.name,
                    ae_title=ae_title,
                    host=peer.host,
                    port=peer.port,
                    allowed_operations=_operations_text(peer.allowed_operations),
                )
                session.add(row)
                session.flush()
                record(
                    session,
                    AuditRecord(
                        AuditEventId.APPLICATION_ACTIVITY,
                        "C",
                        origin,
                        detail=f"peer added: {peer.name} {ae_title}@{peer.host}:{peer.port} "
                        f"may {row.allowed_operations}",
                    ),
                )
                return _peer(row)
        except IntegrityError as error:
            raise PeerExistsError(
                f"a peer named {peer.name!r} or titled {ae_title!r} exists"
            ) from error

    def remove(self, name: str, origin: Origin) -> None:
        with self._database.unit_of_work() as session:
            removed = session.execute(delete(PeerRow).where(PeerRow.name == name)).rowcount  # type: ignore[attr-defined]
            if not removed:
                raise UnknownPeerError(f"no peer named {name!r}")
            record(
                session,
                AuditRecord(
                    AuditEventId.APPLICATION_ACTIVITY, "D", origin, detail=f"peer removed: {name}"
                ),
            )

    def list(self) -> list[Peer]:
        with self._database.reading() as session:
            return [_peer(row) for row in session.scalars(select(PeerRow).order_by(PeerRow.name))]

    def operations_for(self, ae_title: str) -> frozenset[DimseOperation] | None:
        """What the peer with this calling AE title may ask for; None if it is not registered."""
        try:
            with self._database.reading() as session:
                allowed = session.scalar(
                    select(PeerRow.allowed_operations).where(PeerRow.ae_title == ae_title.strip())
                )
        except OperationalError as error:
            raise StorageUnavailable(f"the peer registry cannot be read: {error.orig}") from error
        return None if allowed is None else _operations(allowed)

    def record_failed_handshake(self, remote_host: str, reason: str) -> None:
        """A DICOM TLS connection whose handshake failed (no or untrusted client certificate,
        an old protocol): a node-authentication security alert. Never raises: the connection
        is closed already, and a full audit trail must not crash the listener."""
        origin = Origin(Door.DIMSE, remote_host=remote_host)
        try:
            self._access.record_refusal(origin, f"{NODE_AUTHENTICATION} TLS handshake: {reason}")
        except PedipacsError as error:
            log.error("failed TLS handshake from %s not audited: %s", remote_host, error)
        except OperationalError as error:
            log.error("failed TLS handshake from %s not audited: %s", remote_host, error.orig)

    def by_ae_title(self, ae_title: str) -> Peer:
        with self._database.reading() as session:
            row = session.scalar(select(PeerRow).where(PeerRow.ae_title == ae_title.strip()))
            if row is None:
                raise UnknownPeerError(f"no peer with AE title {ae_title!r}")
            return _peer(row)
