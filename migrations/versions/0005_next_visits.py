"""next- and previous-visit columns on visits and incidents (return rates without a join)

Revision ID: 0005_next_visits
Revises: 0004_flags_visits
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op


revision = '0005_next_visits'
down_revision = '0004_flags_visits'
branch_labels = None
depends_on = None

# The start of the client's first visit (not cancelled) starting at or after the end of
# this one: anywhere, and at the same location. Same SQL on PostgreSQL and SQLite.
NEXT = """
UPDATE {table} SET
  next_visit_at = (SELECT min(later.starts_at) FROM recovery_visits AS later
                   WHERE later.client_id = {table}.client_id AND later.status != 'cancelled'
                     AND later.starts_at >= {table}.{ended}),
  next_visit_here_at = (SELECT min(later.starts_at) FROM recovery_visits AS later
                        WHERE later.client_id = {table}.client_id AND later.status != 'cancelled'
                          AND later.starts_at >= {table}.{ended} AND later.location = {table}.location)
"""
# The end of the client's completed visit just before this one (by end, then booking id).
PREVIOUS = """
UPDATE recovery_visits SET
  previous_end_at = (SELECT max(earlier.ends_at) FROM recovery_visits AS earlier
                     WHERE earlier.client_id = recovery_visits.client_id AND earlier.status = 'completed'
                       AND (earlier.ends_at < recovery_visits.ends_at
                            OR (earlier.ends_at = recovery_visits.ends_at
                                AND earlier.booking_id < recovery_visits.booking_id))),
  previous_here_end_at = (SELECT max(earlier.ends_at) FROM recovery_visits AS earlier
                          WHERE earlier.client_id = recovery_visits.client_id AND earlier.status = 'completed'
                            AND earlier.location = recovery_visits.location
                            AND (earlier.ends_at < recovery_visits.ends_at
                                 OR (earlier.ends_at = recovery_visits.ends_at
                                     AND earlier.booking_id < recovery_visits.booking_id)))
"""


def upgrade() -> None:
    with op.batch_alter_table('recovery_incidents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_visit_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('next_visit_here_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('recovery_visits', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_visit_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('next_visit_here_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('previous_end_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('previous_here_end_at', sa.DateTime(timezone=True), nullable=True))

    op.execute(sa.text(NEXT.format(table='recovery_visits', ended='ends_at')))
    op.execute(sa.text(PREVIOUS))
    op.execute(sa.text(NEXT.format(table='recovery_incidents', ended='visit_ended_at')))


def downgrade() -> None:
    with op.batch_alter_table('recovery_visits', schema=None) as batch_op:
        batch_op.drop_column('previous_here_end_at')
        batch_op.drop_column('previous_end_at')
        batch_op.drop_column('next_visit_here_at')
        batch_op.drop_column('next_visit_at')

    with op.batch_alter_table('recovery_incidents', schema=None) as batch_op:
        batch_op.drop_column('next_visit_here_at')
        batch_op.drop_column('next_visit_at')
