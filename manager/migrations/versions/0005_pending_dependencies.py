"""scheduler: each task counts its dependencies that are not completed yet

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Claiming used to check every queued task's dependencies, which costs a scan of the whole
queue when most tasks wait on others (a chain of 20 tasks has 19 waiting). The count lets
the claim use an index instead. Triggers keep it, so no code path that changes a task's
status, or adds or removes a dependency, can forget to. Tasks are deleted only with their
whole job (the cascade takes their dependents along), so deletion needs no trigger.

Invariant: ``pending_dependencies`` is the number of the task's ``task_dependencies`` rows
whose upstream task is not ``completed``. On SQLite, a later migration that rebuilds the
``tasks`` table (batch mode) drops these triggers with it and must create them again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COUNT = """
UPDATE tasks SET pending_dependencies = (
    SELECT count(*) FROM task_dependencies d JOIN tasks u ON u.id = d.depends_on_id
    WHERE d.task_id = tasks.id AND u.status <> 'completed'
)
"""

_SQLITE_TRIGGERS = [
    """
    CREATE TRIGGER tasks_dependency_completed AFTER UPDATE OF status ON tasks
    WHEN NEW.status = 'completed' AND OLD.status <> 'completed'
    BEGIN
        UPDATE tasks SET pending_dependencies = pending_dependencies - 1
        WHERE id IN (SELECT task_id FROM task_dependencies WHERE depends_on_id = NEW.id);
    END
    """,
    """
    CREATE TRIGGER tasks_dependency_reopened AFTER UPDATE OF status ON tasks
    WHEN OLD.status = 'completed' AND NEW.status <> 'completed'
    BEGIN
        UPDATE tasks SET pending_dependencies = pending_dependencies + 1
        WHERE id IN (SELECT task_id FROM task_dependencies WHERE depends_on_id = NEW.id);
    END
    """,
    """
    CREATE TRIGGER task_dependencies_added AFTER INSERT ON task_dependencies
    WHEN (SELECT status FROM tasks WHERE id = NEW.depends_on_id) <> 'completed'
    BEGIN
        UPDATE tasks SET pending_dependencies = pending_dependencies + 1 WHERE id = NEW.task_id;
    END
    """,
    """
    CREATE TRIGGER task_dependencies_removed AFTER DELETE ON task_dependencies
    WHEN (SELECT status FROM tasks WHERE id = OLD.depends_on_id) <> 'completed'
    BEGIN
        UPDATE tasks SET pending_dependencies = pending_dependencies - 1 WHERE id = OLD.task_id;
    END
    """,
]

_POSTGRESQL_TRIGGERS = [
    """
    CREATE FUNCTION framefarm_task_status_changed() RETURNS trigger AS $$
    BEGIN
        IF (OLD.status = 'completed') IS DISTINCT FROM (NEW.status = 'completed') THEN
            UPDATE tasks SET pending_dependencies = pending_dependencies
                + CASE WHEN NEW.status = 'completed' THEN -1 ELSE 1 END
            WHERE id IN (SELECT task_id FROM task_dependencies WHERE depends_on_id = NEW.id);
        END IF;
        RETURN NULL;
    END $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER tasks_dependency_status AFTER UPDATE OF status ON tasks
    FOR EACH ROW EXECUTE FUNCTION framefarm_task_status_changed()
    """,
    """
    CREATE FUNCTION framefarm_task_dependency_changed() RETURNS trigger AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            IF (SELECT status FROM tasks WHERE id = NEW.depends_on_id) <> 'completed' THEN
                UPDATE tasks SET pending_dependencies = pending_dependencies + 1
                WHERE id = NEW.task_id;
            END IF;
        ELSIF (SELECT status FROM tasks WHERE id = OLD.depends_on_id) <> 'completed' THEN
            UPDATE tasks SET pending_dependencies = pending_dependencies - 1
            WHERE id = OLD.task_id;
        END IF;
        RETURN NULL;
    END $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER task_dependencies_changed AFTER INSERT OR DELETE ON task_dependencies
    FOR EACH ROW EXECUTE FUNCTION framefarm_task_dependency_changed()
    """,
]


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("pending_dependencies", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.create_index("ix_tasks_ready", ["status", "pending_dependencies"], unique=False)
    op.execute(_COUNT)
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in _POSTGRESQL_TRIGGERS if postgresql else _SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER task_dependencies_changed ON task_dependencies")
        op.execute("DROP TRIGGER tasks_dependency_status ON tasks")
        op.execute("DROP FUNCTION framefarm_task_dependency_changed()")
        op.execute("DROP FUNCTION framefarm_task_status_changed()")
    else:
        for name in (
            "tasks_dependency_completed",
            "tasks_dependency_reopened",
            "task_dependencies_added",
            "task_dependencies_removed",
        ):
            op.execute(f"DROP TRIGGER {name}")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_ready")
        batch_op.drop_column("pending_dependencies")
