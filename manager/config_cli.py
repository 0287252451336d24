"""``framefarm manager config``: farm settings, users, API keys and sign-in providers.

Everything here is stored in the database, so every manager process sharing it sees the
change at once. Secrets given on the command line can be ``-`` to read them from stdin
instead (they would otherwise stay in the shell's history).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Literal

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from manager.apikeys import (
    create_api_key,
    get_api_key,
    hash_key,
    list_api_keys,
    revoke_api_key,
)
from manager.auth import keyring_for
from manager.auth.accounts import provider_names_of
from manager.auth.passwords import set_password
from manager.auth.providers import (
    remove_provider,
    save_builtin_provider,
    save_oidc_provider,
)
from manager.auth.sessions import end_sessions_of
from manager.auth.settings import DISCORD_OAUTH, GOOGLE_OAUTH, LOCALAUTH, REGISTRATION
from manager.db import session_scope
from manager.farm_settings import SPECS, get_setting, masked_value, set_setting
from manager.models import ApiKey, User
from manager.settings import ManagerSettings
from manager.users import create_user, delete_user, get_user_by_email, list_users
from shared.wire import ApiKeyScope

TEST_ADMIN_EMAIL = "admin@framefarm.test"
TEST_ADMIN_PASSWORD = "framefarm-test-admin"
TEST_RUNNER_KEY = "ff_TEST-RUNNER-KEY-for-development-only"
SPECIAL_SETTINGS = ("google-oauth", "discord-oauth", "oidc", "password")


class UsageError(ValueError):
    """The command line is wrong; exit 2 with a hint."""


def add_config_parser(actions: Any) -> None:
    parser = actions.add_parser(
        "config",
        help="farm settings, users, API keys and sign-in providers (in the database)",
        description="Change what is stored in the manager's database. Secrets may be given "
        "as '-' to read them from stdin.",
    )
    # Also accepted after `config`; the same flags before it work as well.
    parser.add_argument("--db", default=argparse.SUPPRESS, help="SQLite path or SQLAlchemy URL")
    parser.add_argument("--storage", default=argparse.SUPPRESS, help="storage folder (secret key)")
    commands = parser.add_subparsers(dest="config_action", required=True, metavar="COMMAND")

    for verb in ("enable", "disable"):
        switch = commands.add_parser(verb, help=f"{verb} a feature: localauth, registration, …")
        switch.add_argument("setting", help=f"{LOCALAUTH}, {REGISTRATION}, or another on/off one")

    add = commands.add_parser("add", help="add a user or an API key").add_subparsers(
        dest="add_what", required=True
    )
    user = add.add_parser("user", help="add a user (with a password for local sign-in)")
    user.add_argument("email")
    user.add_argument("password", nargs="?", help="'-' reads it from stdin; leave out for none")
    user.add_argument("--admin", action="store_true", help="make the user an admin")
    user.add_argument("--name", default="")
    key = add.add_parser("apikey", help="add an API key; the secret is printed once")
    key.add_argument("name", help="what the key is for, e.g. 'render nodes'")
    key.add_argument("--scope", choices=[s.value for s in ApiKeyScope], required=True)
    key.add_argument("--user", help="email of the user a user-scope key acts as")

    setter = commands.add_parser(
        "set",
        help="set a setting, a sign-in provider or a password",
        description="set google-oauth CLIENT_ID CLIENT_SECRET [--redirect-url URL] | "
        "set discord-oauth CLIENT_ID CLIENT_SECRET [--redirect-url URL] | "
        "set oidc NAME DISCOVERY_URL CLIENT_ID CLIENT_SECRET [--redirect-url URL] [--label L] | "
        "set password EMAIL PASSWORD | set SETTING VALUE (see `config show`)",
    )
    setter.add_argument("setting", help="google-oauth, discord-oauth, oidc, password, or a setting")
    setter.add_argument("values", nargs="+")
    setter.add_argument("--redirect-url", help="the callback URL registered at the provider")
    setter.add_argument("--label", help="the provider's name on the sign-in page")

    commands.add_parser("show", help="show every setting, secrets masked")
    lister = commands.add_parser("list", help="list users or API keys")
    lister.add_argument("what", choices=["users", "apikeys"])
    remover = commands.add_parser(
        "remove", help="remove a user, revoke an API key, drop a provider"
    )
    remover.add_argument("what", choices=["user", "apikey", "provider"])
    remover.add_argument("which", help="a user's email, a key's id or prefix, a provider's name")

    init = commands.add_parser(
        "init-test", help="DEVELOPMENT ONLY: local auth, a known admin password and runner key"
    )
    init.add_argument("--force", action="store_true", help="even if the farm has other users")


def run_config(args: argparse.Namespace, engine: Engine, settings: ManagerSettings) -> int:
    try:
        with session_scope(engine) as session:
            _dispatch(args, session, settings)
    except UsageError as exc:
        print(f"usage error: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    return 0


def _dispatch(args: argparse.Namespace, session: Session, settings: ManagerSettings) -> None:
    match args.config_action:
        case "enable" | "disable":
            _switch(session, args.setting, args.config_action == "enable")
        case "add" if args.add_what == "user":
            _add_user(session, args.email, args.password, admin=args.admin, name=args.name)
        case "add":
            _add_key(session, args.name, ApiKeyScope(args.scope), args.user)
        case "set":
            _set(session, settings, args)
        case "show":
            _show(session, settings)
        case "list":
            _list_users(session) if args.what == "users" else _list_keys(session)
        case "remove":
            _remove(session, args.what, args.which)
        case "init-test":
            _init_test(session, force=args.force)


def _secret_arg(value: str | None) -> str | None:
    """``-`` means: read the secret from stdin, so it stays out of the shell history."""
    if value != "-":
        return value
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise UsageError("expected the secret on stdin")
    return line


def _switch(session: Session, name: str, on: bool) -> None:
    spec = SPECS.get(name)
    if spec is None or not isinstance(spec.default, bool):
        switches = sorted(n for n, s in SPECS.items() if isinstance(s.default, bool))
        raise UsageError(f"{name!r} is not an on/off setting; these are: {', '.join(switches)}")
    set_setting(session, name, on)
    print(f"{name} {'enabled' if on else 'disabled'}")
    if name == REGISTRATION and on and not get_setting(session, LOCALAUTH):
        print("note: registration needs localauth too: `framefarm manager config enable localauth`")


def _add_user(
    session: Session, email: str, password: str | None, *, admin: bool, name: str
) -> None:
    user = create_user(session, email=email, name=name, is_admin=admin)
    password = _secret_arg(password)
    if password is not None:
        set_password(session, user, password)
    print(f"added user {user.email} (id {user.id}{', admin' if admin else ''})")
    if password is None:
        print("they have no password: they sign in through an OAuth provider")
    elif not get_setting(session, LOCALAUTH):
        print("note: password sign-in is off; `framefarm manager config enable localauth`")


def _add_key(session: Session, name: str, scope: ApiKeyScope, email: str | None) -> None:
    if scope is ApiKeyScope.USER and not email:
        raise UsageError("a user-scope key needs --user EMAIL")
    if scope is ApiKeyScope.RUNNER and email:
        raise UsageError("a runner key acts for no user; leave out --user")
    owner = get_user_by_email(session, email) if email else None
    new = create_api_key(session, name=name, scope=scope, user=owner)
    print(new.key)
    print(
        f"added {scope.value} key {name!r} (id {new.record.id}); it is shown only this once",
        file=sys.stderr,
    )


def _set(session: Session, settings: ManagerSettings, args: argparse.Namespace) -> None:
    name, values = args.setting, list(args.values)
    if name in ("google-oauth", "discord-oauth"):
        if len(values) != 2:
            raise UsageError(f"set {name} CLIENT_ID CLIENT_SECRET [--redirect-url URL]")
        kind: Literal["google", "discord"] = "google" if name == "google-oauth" else "discord"
        provider = save_builtin_provider(
            session,
            keyring_for(settings),
            kind,
            client_id=values[0],
            client_secret=_secret_arg(values[1]) or "",
            redirect_url=args.redirect_url,
        )
        print(f"{name} set; sign-in at /api/auth/{provider.name}/login")
    elif name == "oidc":
        if len(values) != 4:
            raise UsageError(
                "set oidc NAME DISCOVERY_URL CLIENT_ID CLIENT_SECRET [--redirect-url URL]"
            )
        provider = save_oidc_provider(
            session,
            keyring_for(settings),
            values[0],
            discovery_url=values[1],
            client_id=values[2],
            client_secret=_secret_arg(values[3]) or "",
            redirect_url=args.redirect_url,
            label=args.label,
        )
        print(
            f"OpenID Connect provider {provider.name} set; "
            f"sign-in at /api/auth/{provider.name}/login"
        )
    elif name == "password":
        if len(values) != 2:
            raise UsageError("set password EMAIL PASSWORD (or - to read it from stdin)")
        user = get_user_by_email(session, values[0])
        set_password(session, user, _secret_arg(values[1]) or "")
        ended = end_sessions_of(session, user)
        print(f"password of {user.email} set; {ended} session(s) signed out")
    else:
        spec = SPECS.get(name)
        if spec is None:
            known = sorted({*SPECS, *SPECIAL_SETTINGS} - {GOOGLE_OAUTH, DISCORD_OAUTH})
            raise UsageError(f"there is no setting {name!r}; known: {', '.join(known)}")
        if len(values) != 1:
            raise UsageError(f"set {name} VALUE")
        value = set_setting(session, name, values[0])
        print(f"{name} = {_shown(masked_value(spec, value))}")


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _show(session: Session, settings: ManagerSettings) -> None:
    width = max(len(name) for name in SPECS)
    for name in sorted(SPECS):
        spec = SPECS[name]
        value = masked_value(spec, get_setting(session, name))
        print(f"{name:<{width}} = {_shown(value)}    # {spec.description}")
    print(f"{'secret key':<{width}} : {keyring_for(settings).source}")


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def _list_users(session: Session) -> None:
    print(f"{'id':>4}  {'email':<32} {'admin':<5} {'password':<8} {'providers':<16} created")
    for user in list_users(session):
        providers = ",".join(provider_names_of(session, user)) or "-"
        print(
            f"{user.id:>4}  {user.email:<32} {'yes' if user.is_admin else '':<5} "
            f"{'yes' if user.password_hash else '':<8} {providers:<16} {_when(user.created_at)}"
        )


def _list_keys(session: Session) -> None:
    emails = dict(session.exec(select(User.id, User.email)).all())
    print(
        f"{'id':>4}  {'name':<20} {'prefix':<10} {'scope':<6} {'user':<28} "
        f"{'last used':<16} revoked"
    )
    for key in list_api_keys(session):
        user = emails.get(key.user_id, "-") if key.user_id else "-"
        print(
            f"{key.id:>4}  {key.name[:20]:<20} {key.prefix:<10} {key.scope:<6} {user:<28} "
            f"{_when(key.last_used_at):<16} {_when(key.revoked_at)}"
        )


def _find_key(session: Session, which: str) -> ApiKey:
    if which.isdigit():
        return get_api_key(session, int(which))
    matches = session.exec(select(ApiKey).where(col(ApiKey.prefix).startswith(which))).all()
    if len(matches) != 1:
        raise UsageError(
            f"{len(matches)} keys start with {which!r}; give the key's id (`config list apikeys`)"
        )
    return matches[0]


def _remove(session: Session, what: str, which: str) -> None:
    if what == "user":
        user = get_user_by_email(session, which)
        delete_user(session, user)
        print(f"removed user {user.email}, their keys and sessions (their jobs stay)")
    elif what == "apikey":
        key = revoke_api_key(session, _find_key(session, which))
        print(f"revoked API key {key.id} ({key.name!r}, {key.prefix}…)")
    else:
        remove_provider(session, which)
        print(f"removed sign-in provider {which}")


def _init_test(session: Session, *, force: bool) -> None:
    others = session.exec(select(User).where(User.email != TEST_ADMIN_EMAIL)).first()
    if others is not None and not force:
        raise UsageError(
            f"this farm has real users ({others.email}, …); init-test would add a known admin "
            "password and runner key to it. Pass --force if you really mean to."
        )
    banner = "!" * 78
    print(banner, file=sys.stderr)
    print(
        "!! init-test: FOR DEVELOPMENT ONLY. Everyone who reads this knows the admin",
        file=sys.stderr,
    )
    print("!! password and the runner key below. Never run it on a real farm.", file=sys.stderr)
    print(banner, file=sys.stderr)
    set_setting(session, LOCALAUTH, True)
    admin = session.exec(select(User).where(User.email == TEST_ADMIN_EMAIL)).first()
    if admin is None:
        admin = create_user(session, email=TEST_ADMIN_EMAIL, name="test admin", is_admin=True)
    admin.is_admin = True
    set_password(session, admin, TEST_ADMIN_PASSWORD)
    key = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(TEST_RUNNER_KEY))).first()
    if key is None:
        create_api_key(session, name="test runner", scope=ApiKeyScope.RUNNER, key=TEST_RUNNER_KEY)
    else:
        key.revoked_at = None
        session.add(key)
    print("localauth  : enabled")
    print(f"admin      : {TEST_ADMIN_EMAIL}  password: {TEST_ADMIN_PASSWORD}")
    print(f"runner key : {TEST_RUNNER_KEY}")
