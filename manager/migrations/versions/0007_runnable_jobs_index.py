"""scheduler: the claim walks the running jobs best first through an index

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

``ix_jobs_runnable`` holds the queued and active jobs ordered as the claim picks them
(priority, highest first, then age). The claim used to check every running job for a task
the runner may take and then sort them; it now walks this index and stops at the first job
that has one (0.2–0.4 ms to 0.03–0.05 ms for the claim's query with 100 running jobs,
measured on a copy of the dispatch benchmark's database).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

RUNNABLE = "status IN ('active', 'queued')"


def upgrade() -> None:
    op.create_index(
        "ix_jobs_runnable",
        "jobs",
        [sa.text("priority DESC"), "id"],
        sqlite_where=sa.text(RUNNABLE),
        postgresql_where=sa.text(RUNNABLE),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_runnable", table_name="jobs")
