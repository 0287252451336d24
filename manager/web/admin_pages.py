"""Admin pages: users, API keys (the secret shown once), and the farm settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlmodel import col, select

from manager.admin import users_admin
from manager.apikeys import create_api_key, get_api_key, list_api_keys, revoke_api_key
from manager.deps import SessionDep
from manager.errors import FarmError
from manager.farm_settings import SPECS, get_setting, masked_value, set_setting
from manager.models import User
from manager.schemas import RowId
from manager.users import get_user, set_admin
from manager.web.access import WebAdmin
from manager.web.templating import flash, render
from shared.wire import ApiKeyScope

router = APIRouter(include_in_schema=False)


@router.get("/admin")
def admin_home(admin: WebAdmin) -> RedirectResponse:
    return RedirectResponse("/admin/users", status_code=303)


@router.get("/admin/users", response_class=HTMLResponse)
def users_page(request: Request, admin: WebAdmin, session: SessionDep) -> HTMLResponse:
    return render(
        request, "admin_users.html", {"user": admin, "users": users_admin(session), "tab": "users"}
    )


@router.get("/admin/users/rows", response_class=HTMLResponse)
def user_rows(request: Request, admin: WebAdmin, session: SessionDep) -> HTMLResponse:
    return render(request, "_user_rows.html", {"user": admin, "users": users_admin(session)})


@router.post("/admin/users/{user_id}/admin", response_class=HTMLResponse)
def toggle_admin(
    request: Request,
    user_id: RowId,
    admin: WebAdmin,
    session: SessionDep,
    make: Annotated[bool, Form()] = True,
) -> HTMLResponse:
    target = get_user(session, user_id)
    try:
        set_admin(session, target, make)
        session.commit()
    except FarmError as exc:
        session.rollback()
        return flash(request, exc.message, kind="error")
    word = "is now an admin" if make else "is no longer an admin"
    return flash(request, f"{target.email} {word}.", refresh="admin-changed")


def _keys_context(session: SessionDep, admin: User) -> dict[str, object]:
    users = {u.id: u.email for u in session.exec(select(User).order_by(col(User.email)))}
    return {"user": admin, "keys": list_api_keys(session), "emails": users, "tab": "keys"}


@router.get("/admin/keys", response_class=HTMLResponse)
def keys_page(request: Request, admin: WebAdmin, session: SessionDep) -> HTMLResponse:
    return render(request, "admin_keys.html", _keys_context(session, admin))


@router.post("/admin/keys", response_class=HTMLResponse)
def create_key(
    request: Request,
    admin: WebAdmin,
    session: SessionDep,
    name: Annotated[str, Form(min_length=1, max_length=200)],
    scope: Annotated[str, Form(pattern="^(user|runner)$")] = "user",
    user_id: Annotated[int | None, Form()] = None,
) -> HTMLResponse:
    """Make a key; the answer is the only place its secret ever appears."""
    owner = get_user(session, user_id or admin.id or 0) if scope == "user" else None
    new = create_api_key(session, name=name, scope=ApiKeyScope(scope), user=owner)
    session.commit()
    response = render(
        request, "_key_created.html", {"key": new.key, "record": new.record, "owner": owner}
    )
    response.headers["HX-Trigger"] = "keys-changed"
    return response


@router.get("/admin/keys/rows", response_class=HTMLResponse)
def key_rows(request: Request, admin: WebAdmin, session: SessionDep) -> HTMLResponse:
    return render(request, "_key_rows.html", _keys_context(session, admin))


@router.post("/admin/keys/{key_id}/revoke", response_class=HTMLResponse)
def revoke_key(
    request: Request, key_id: RowId, admin: WebAdmin, session: SessionDep
) -> HTMLResponse:
    record = revoke_api_key(session, get_api_key(session, key_id))
    session.commit()
    return flash(
        request, f"Key {record.prefix}… ({record.name}) is revoked.", refresh="keys-changed"
    )


def shown(value: object) -> str:
    """A setting as an admin types it back: on/off, numbers, and nothing for unset."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None or value == {}:
        return ""
    return str(value)


@router.get("/admin/settings", response_class=HTMLResponse)
def settings_page(request: Request, admin: WebAdmin, session: SessionDep) -> HTMLResponse:
    rows = [
        {
            "name": name,
            "value": shown(masked_value(SPECS[name], get_setting(session, name))),
            "default": shown(masked_value(SPECS[name], SPECS[name].default)),
            "description": SPECS[name].description,
            "secret": SPECS[name].secret,
        }
        for name in sorted(SPECS)
    ]
    return render(
        request, "admin_settings.html", {"user": admin, "settings": rows, "tab": "settings"}
    )


@router.post("/admin/settings/{name}", response_class=HTMLResponse)
def change_setting(
    request: Request,
    name: str,
    admin: WebAdmin,
    session: SessionDep,
    value: Annotated[str, Form()],
) -> HTMLResponse:
    spec = SPECS.get(name)
    if spec is None or spec.secret:
        return flash(
            request,
            f"{name} cannot be changed here; use `framefarm manager config set {name} …`.",
            kind="error",
        )
    try:
        stored = set_setting(session, name, value)
        session.commit()
    except ValueError as exc:
        session.rollback()
        return flash(request, f"{name}: {exc}", kind="error")
    return flash(request, f"{name} is now {stored}.")
