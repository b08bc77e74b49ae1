"""recovery: the audit trail refuses an INSERT that would replace a line (SQLite)

On SQLite, ``REPLACE INTO`` (or ``INSERT OR REPLACE``) with an existing id deletes the old
line without firing the DELETE trigger (that needs ``recursive_triggers``) and inserts a new
one: the line is rewritten. A BEFORE INSERT trigger refuses any insert of an id that is
already there. PostgreSQL has no REPLACE; its UPDATE/DELETE/TRUNCATE triggers already hold.

Revision ID: 0006_audit_insert_guard
Revises: 0005_next_visits
Create Date: 2026-12-01
"""

from alembic import op

revision = '0006_audit_insert_guard'
down_revision = '0005_next_visits'
branch_labels = None
depends_on = None

# The same statement as flask_recovery.models.AUDIT_TRIGGERS_SQLITE's last one.
SQLITE_GUARD = (
    "CREATE TRIGGER recovery_audit_log_no_replace BEFORE INSERT ON recovery_audit_log "
    "WHEN EXISTS (SELECT 1 FROM recovery_audit_log WHERE id = NEW.id) "
    "BEGIN SELECT RAISE(ABORT, 'recovery_audit_log is append-only'); END"
)


def upgrade():
    if op.get_bind().dialect.name == "sqlite":
        op.execute(SQLITE_GUARD)


def downgrade():
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS recovery_audit_log_no_replace")
