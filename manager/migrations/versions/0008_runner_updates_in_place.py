"""runners: no index on last_seen_at, so marking a runner seen rewrites its row in place

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

Every heartbeat, progress report, claim and completion writes its runner's ``last_seen_at``
(about 300 times a second with 200 runners). With that column indexed, PostgreSQL cannot
update the row in place (a HOT update): each write left a dead row version and a new index
entry behind, 37,689 of them for 200 runners in the two-minute load benchmark before the
autovacuum came by, and every look-up of a runner by id had to step over them (the load
benchmark's latencies grew through the run). Only the sweeper filters on the column, once
every few seconds, over a table of one row per runner: a scan.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_runners_last_seen_at", table_name="runners")


def downgrade() -> None:
    op.create_index("ix_runners_last_seen_at", "runners", ["last_seen_at"])
