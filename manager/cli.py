"""``framefarm manager``: serve the API, and manage users and API keys."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from typing import Any

from pydantic import SecretStr, ValidationError

from manager.apikeys import create_api_key
from manager.blender_cli import add_blender_parser, run_blender
from manager.config_cli import add_config_parser, run_config
from manager.db import is_sqlite, make_engine, migrate, session_scope
from manager.errors import FarmError
from manager.logs import configure_logging
from manager.metrics import MULTIPROCESS_DIR
from manager.settings import ManagerSettings
from manager.users import create_user, get_user_by_email
from shared.wire import ApiKeyScope

KEEP_ALIVE_SECONDS = 75

SETTING_FLAGS = {
    "port": ("--port", int, "TCP port (FRAMEFARM_PORT, default 8080)"),
    "host": ("--host", str, "listen address (FRAMEFARM_HOST, default 0.0.0.0)"),
    "workers": (
        "--workers",
        int,
        "manager processes on the one port; more than one needs PostgreSQL "
        "(FRAMEFARM_WORKERS, default 1)",
    ),
    "db": ("--db", str, "SQLite path or SQLAlchemy URL (FRAMEFARM_DB, default framefarm.db)"),
    "storage": ("--storage", str, "storage folder (FRAMEFARM_STORAGE)"),
    "log_file": ("--log-file", str, "also log to this file (FRAMEFARM_LOG_FILE)"),
    "log_level": ("--log-level", str, "DEBUG, INFO, WARNING, ERROR (FRAMEFARM_LOG_LEVEL)"),
}


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "manager",
        help="run the manager, or configure it: settings, users, API keys, sign-in",
        description="Without a subcommand, serve the manager's HTTP API.",
    )
    for key, (flag, kind, text) in SETTING_FLAGS.items():
        parser.add_argument(flag, dest=key, type=kind, default=None, help=text)
    parser.add_argument(
        "--verbose", action="store_true", default=None, help="debug logs (FRAMEFARM_VERBOSE)"
    )
    actions = parser.add_subparsers(
        dest="manager_action", metavar="{config,users,keys,blender,migrate}"
    )
    add_config_parser(actions)
    add_blender_parser(actions)

    users = actions.add_parser("users", help="manage user accounts").add_subparsers(
        dest="users_action", required=True
    )
    create = users.add_parser("create", help="create a user")
    create.add_argument("email")
    create.add_argument("--name", default="")
    create.add_argument("--admin", action="store_true", help="make the user an admin")

    keys = actions.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_action", required=True
    )
    key = keys.add_parser("create", help="create an API key; the secret is printed once")
    key.add_argument("--name", required=True, help="what the key is for, e.g. 'render nodes'")
    key.add_argument("--scope", choices=[s.value for s in ApiKeyScope], required=True)
    key.add_argument("--user", help="email of the user a user-scope key acts as")

    actions.add_parser("migrate", help="apply database migrations and exit")
    parser.set_defaults(handler=run)


def settings_from_args(args: argparse.Namespace) -> ManagerSettings:
    overrides = {key: getattr(args, key) for key in SETTING_FLAGS if getattr(args, key) is not None}
    if args.verbose:
        overrides["verbose"] = True
    return ManagerSettings(**overrides)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"])
            flag = SETTING_FLAGS[name][0] + " or " if name in SETTING_FLAGS else ""
            print(f"error: {flag}FRAMEFARM_{name.upper()}: {error['msg']}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_file, settings.verbose)
    try:
        if args.manager_action is None:
            return serve(settings)
        engine = make_engine(settings.database_url)
        migrate(engine)
        if args.manager_action == "migrate":
            print("database is up to date")
        elif args.manager_action == "config":
            return run_config(args, engine, settings)
        elif args.manager_action == "blender":
            return run_blender(args, settings)
        elif args.manager_action == "users":
            with session_scope(engine) as session:
                user = create_user(session, email=args.email, name=args.name, is_admin=args.admin)
                print(
                    f"created user {user.email} (id {user.id}{', admin' if user.is_admin else ''})"
                )
        elif args.manager_action == "keys":
            with session_scope(engine) as session:
                owner = get_user_by_email(session, args.user) if args.user else None
                scope = ApiKeyScope(args.scope)
                if scope is ApiKeyScope.USER and owner is None:
                    print("a user-scope key needs --user EMAIL", file=sys.stderr)
                    return 2
                new = create_api_key(session, name=args.name, scope=scope, user=owner)
                print(new.key)
                print(
                    f"created {scope.value} key {new.record.name!r}; it is shown only this once",
                    file=sys.stderr,
                )
        return 0
    except (FarmError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def serve(settings: ManagerSettings) -> int:
    import uvicorn

    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": settings.verbose,
        # Longer than clients keep an idle connection (httpx: 5 s) and than proxies do (60 s):
        # with equal timeouts a client may send a request on a connection the manager is
        # closing at that very moment, and the runner sees a ReadError.
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
    }
    if settings.workers == 1:
        from manager.app import create_app

        uvicorn.run(create_app(settings), **options)
        return 0
    engine = make_engine(settings.database_url)
    try:
        if is_sqlite(engine):
            print(
                f"error: --workers {settings.workers} needs PostgreSQL (--db postgresql+psycopg://…):"
                " on SQLite the processes could not wake each other's waiting runners;"
                " run one worker",
                file=sys.stderr,
            )
            return 2
        # Once here, not in every worker at the same instant.
        migrate(engine)
    finally:
        engine.dispose()
    # The workers are fresh interpreters that read their settings as this one did: from the
    # environment, where the command line's flags are written for them; their metrics are
    # counted in files in a folder of this run's own, so a scrape sees every worker's.
    os.environ.update(settings_environment(settings))
    metrics = tempfile.mkdtemp(prefix="framefarm-metrics-")
    os.environ[MULTIPROCESS_DIR] = metrics
    try:
        uvicorn.run(
            "manager.app:create_worker_app", factory=True, workers=settings.workers, **options
        )
    finally:
        shutil.rmtree(metrics, ignore_errors=True)
    return 0


def settings_environment(settings: ManagerSettings) -> dict[str, str]:
    """The ``FRAMEFARM_*`` variables that give another process these settings."""
    values: dict[str, str] = {}
    for name in ManagerSettings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        values[f"FRAMEFARM_{name.upper()}"] = str(value)
    return values
