"""Audit chain: every audit record carries its position and the SHA-256 of itself and of the
record before it, and one head row holds the last link.

Issue 4 asks for an append-only, tamper-evident audit trail. Records written before this
revision are chained here, in id order. The hash is computed by a copy of the rule of this
revision (`_chain_hash`), not by importing the application, so the migration stays what it was.

Revision ID: 7d3e9b2a5c41
Revises: 4c1d2e7f9a10
Create Date: 2026-11-25 01:00:00
"""

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "7d3e9b2a5c41"
down_revision: str | None = "4c1d2e7f9a10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64
HASHED_FIELDS = (
    "at", "event_id", "event_name", "event_action", "outcome", "door", "user", "remote_host",
    "remote_ae", "patient_id", "study_instance_uid", "detail",
)  # fmt: skip


def _canonical(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] in " T":
        value = datetime.fromisoformat(value)  # SQLite hands DateTime back as text here
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def _chain_hash(previous_hash: str, sequence: int, values: Any) -> str:
    content = [previous_hash, sequence, *(_canonical(values[f]) for f in HASHED_FIELDS)]
    encoded = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table("audit_event") as batch:
        batch.add_column(sa.Column("sequence", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("previous_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("record_hash", sa.String(length=64), nullable=True))
    connection = op.get_bind()
    events = sa.table(
        "audit_event",
        sa.column("id"),
        sa.column("sequence"),
        sa.column("previous_hash"),
        sa.column("record_hash"),
        *(sa.column(name) for name in HASHED_FIELDS),
    )
    previous, sequence = GENESIS_HASH, 0
    rows = connection.execute(sa.select(events).order_by(events.c.id)).mappings().all()
    for row in rows:
        sequence += 1
        record_hash = _chain_hash(previous, sequence, row)
        connection.execute(
            events.update()
            .where(events.c.id == row["id"])
            .values(sequence=sequence, previous_hash=previous, record_hash=record_hash)
        )
        previous = record_hash
    with op.batch_alter_table("audit_event") as batch:
        batch.alter_column("sequence", existing_type=sa.BigInteger(), nullable=False)
        batch.alter_column("previous_hash", existing_type=sa.String(length=64), nullable=False)
        batch.alter_column("record_hash", existing_type=sa.String(length=64), nullable=False)
        batch.create_index("ix_audit_event_sequence", ["sequence"], unique=True)
    head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("record_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    op.bulk_insert(head, [{"id": 1, "sequence": sequence, "record_hash": previous}])


def downgrade() -> None:
    op.drop_table("audit_chain_head")
    with op.batch_alter_table("audit_event") as batch:
        batch.drop_index("ix_audit_event_sequence")
        batch.drop_column("record_hash")
        batch.drop_column("previous_hash")
        batch.drop_column("sequence")
