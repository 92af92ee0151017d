"""Accounts: users with roles, sign-in sessions and API tokens, care teams, break-the-glass
accesses, and the cursor of the ATNA audit export.

Issue 4: every door checks who is asking. No account is created here: `pedipacs serve` creates
the first administrator with a one-time password.

Revision ID: 9b5a1d7e3f20
Revises: 8e4f0c3b6d52
Create Date: 2026-11-25 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9b5a1d7e3f20"
down_revision: str | None = "8e4f0c3b6d52"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MOMENT = sa.DateTime(timezone=True)


def _user_id(table: str) -> sa.Column[int]:
    return sa.Column(
        "user_id",
        ID,
        sa.ForeignKey("user_account.id", name=f"fk_{table}_user_id_user_account",
                      ondelete="CASCADE"),
        nullable=False,
    )  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "user_account",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(128), nullable=False),
        sa.Column("roles", sa.String(128), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("must_change_password", sa.Boolean(), nullable=False),
        sa.Column("oidc_issuer", sa.String(255), nullable=True),
        sa.Column("oidc_subject", sa.String(255), nullable=True),
        sa.Column("failed_signins", sa.Integer(), nullable=False),
        sa.Column("locked_until", MOMENT, nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_user_account"),
        sa.UniqueConstraint("username", name="uq_user_account_username"),
        sa.UniqueConstraint(
            "oidc_issuer", "oidc_subject", name="uq_user_account_oidc_issuer_oidc_subject"
        ),
    )
    op.create_table(
        "user_session",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        _user_id("user_session"),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("label", sa.String(128), nullable=True),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("remote_host", sa.String(255), nullable=True),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("last_seen_at", MOMENT, nullable=False),
        sa.Column("expires_at", MOMENT, nullable=False),
        sa.Column("idle_minutes", sa.Float(), nullable=True),
        sa.Column("ended_at", MOMENT, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_user_session"),
        sa.UniqueConstraint("token_hash", name="uq_user_session_token_hash"),
    )
    op.create_index("ix_user_session_user_id", "user_session", ["user_id"])
    op.create_table(
        "care_team_member",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        _user_id("care_team_member"),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("added_at", MOMENT, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_care_team_member"),
        sa.UniqueConstraint("user_id", "patient_id", name="uq_care_team_member_user_id_patient_id"),
    )
    op.create_table(
        "break_glass_access",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        _user_id("break_glass_access"),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("remote_host", sa.String(255), nullable=True),
        sa.Column("started_at", MOMENT, nullable=False),
        sa.Column("expires_at", MOMENT, nullable=False),
        sa.Column("reviewed_by", sa.String(64), nullable=True),
        sa.Column("reviewed_at", MOMENT, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_break_glass_access"),
    )
    op.create_index(
        "ix_break_glass_access_user_id_patient_id",
        "break_glass_access",
        ["user_id", "patient_id"],
    )
    op.create_table(
        "audit_export_cursor",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("sequence", ID, nullable=False),
        sa.Column("updated_at", MOMENT, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_audit_export_cursor"),
    )


def downgrade() -> None:
    op.drop_table("audit_export_cursor")
    op.drop_index("ix_break_glass_access_user_id_patient_id", "break_glass_access")
    op.drop_table("break_glass_access")
    op.drop_table("care_team_member")
    op.drop_index("ix_user_session_user_id", "user_session")
    op.drop_table("user_session")
    op.drop_table("user_account")
