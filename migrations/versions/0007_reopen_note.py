"""recovery: the note a staff member gives when reopening a case

Revision ID: 0007_reopen_note
Revises: 0006_audit_insert_guard
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = '0007_reopen_note'
down_revision = '0006_audit_insert_guard'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("recovery_incidents") as batch:
        batch.add_column(sa.Column("reopen_note", sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("recovery_incidents") as batch:
        batch.drop_column("reopen_note")
