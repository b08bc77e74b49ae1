"""recovery: incidents and the append-only audit trail

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = ("recovery",)
depends_on = None

TZ = sa.DateTime(timezone=True)

SQLITE_TRIGGERS = [
    "CREATE TRIGGER recovery_audit_log_no_update BEFORE UPDATE ON recovery_audit_log "
    "BEGIN SELECT RAISE(ABORT, 'recovery_audit_log is append-only'); END",
    "CREATE TRIGGER recovery_audit_log_no_delete BEFORE DELETE ON recovery_audit_log "
    "BEGIN SELECT RAISE(ABORT, 'recovery_audit_log is append-only'); END",
]
POSTGRESQL_TRIGGERS = [
    "CREATE OR REPLACE FUNCTION recovery_audit_log_refuse() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'recovery_audit_log is append-only'; END; $$ LANGUAGE plpgsql",
    "CREATE TRIGGER recovery_audit_log_no_change BEFORE UPDATE OR DELETE ON recovery_audit_log "
    "FOR EACH ROW EXECUTE FUNCTION recovery_audit_log_refuse()",
    "CREATE TRIGGER recovery_audit_log_no_truncate BEFORE TRUNCATE ON recovery_audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION recovery_audit_log_refuse()",
]


def upgrade() -> None:
    op.create_table(
        "recovery_audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=True),
        sa.Column("actor_role", sa.String(length=32), nullable=True),
        sa.Column("action", sa.String(length=48), nullable=False),
        sa.Column("booking_id", sa.String(length=64), nullable=True),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("subject_type", sa.String(length=32), nullable=True),
        sa.Column("subject_id", sa.String(length=64), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_audit_log")),
    )
    for column in ("action", "at", "booking_id", "client_id"):
        op.create_index(op.f(f"ix_recovery_audit_log_{column}"), "recovery_audit_log", [column])

    op.create_table(
        "recovery_incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("booking_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=True),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("conduct", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("corrective_action", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("recorded_by_name", sa.String(length=120), nullable=True),
        sa.Column("staff_id", sa.String(length=64), nullable=True),
        sa.Column("visit_started_at", TZ, nullable=False),
        sa.Column("visit_ended_at", TZ, nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
        sa.Column("resolved_at", TZ, nullable=True),
        sa.Column("resolved_by", sa.String(length=64), nullable=True),
        sa.Column("resolution_note", sa.Text(), nullable=True),
        sa.Column("closed_at", TZ, nullable=True),
        sa.Column("reopened_at", TZ, nullable=True),
        sa.Column("reopen_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_incidents")),
    )
    for column in ("booking_id", "client_id", "recorded_at", "status"):
        op.create_index(op.f(f"ix_recovery_incidents_{column}"), "recovery_incidents", [column])
    op.create_index("ix_recovery_incidents_client_recorded", "recovery_incidents", ["client_id", "recorded_at"])

    dialect = op.get_bind().dialect.name
    for statement in {"sqlite": SQLITE_TRIGGERS, "postgresql": POSTGRESQL_TRIGGERS}.get(dialect, []):
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("recovery_incidents")
    op.drop_table("recovery_audit_log")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS recovery_audit_log_refuse()")
