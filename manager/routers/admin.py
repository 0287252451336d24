"""Admin API: every runner, user, key and job of the farm, and the farm settings."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from manager.admin import (
    admin_jobs,
    delete_runner,
    farm_stats,
    get_runner,
    list_runners,
    runner_admin_public,
    set_runner_enabled,
    users_admin,
)
from manager.apikeys import create_api_key, get_api_key, list_api_keys, revoke_api_key
from manager.auth.schemas import (
    AdminJobsPublic,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    FarmStats,
    RunnerAdminPublic,
    SettingPublic,
    SettingUpdate,
    UserAdminPublic,
)
from manager.deps import AdminUser, SessionDep, WorkSignalDep
from manager.errors import Conflict, InvalidInput
from manager.farm_settings import SPECS, get_setting, masked_value, set_setting
from manager.schemas import RowId
from manager.users import delete_user, get_user, set_admin
from shared.wire import ApiKeyScope

router = APIRouter(prefix="/api/admin", tags=["admin"])


@router.get("/stats", response_model=FarmStats)
def stats(admin: AdminUser, session: SessionDep) -> FarmStats:
    """Users, keys, and runners, jobs and tasks by status."""
    return farm_stats(session)


@router.get("/runners", response_model=list[RunnerAdminPublic])
def runners(admin: AdminUser, session: SessionDep) -> list[RunnerAdminPublic]:
    return list_runners(session)


@router.post("/runners/{runner_id}/enable", response_model=RunnerAdminPublic)
def enable_runner(
    runner_id: RowId, admin: AdminUser, session: SessionDep, signal: WorkSignalDep
) -> RunnerAdminPublic:
    runner = get_runner(session, runner_id)
    set_runner_enabled(session, runner, True)
    session.commit()
    signal.notify()
    return runner_admin_public(session, runner)


@router.post("/runners/{runner_id}/disable", response_model=RunnerAdminPublic)
def disable_runner(runner_id: RowId, admin: AdminUser, session: SessionDep) -> RunnerAdminPublic:
    """The runner finishes its current task and then claims nothing more."""
    runner = get_runner(session, runner_id)
    set_runner_enabled(session, runner, False)
    session.commit()
    return runner_admin_public(session, runner)


@router.delete("/runners/{runner_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_runner(
    runner_id: RowId, admin: AdminUser, session: SessionDep, signal: WorkSignalDep
) -> Response:
    """Forget the runner and requeue its tasks (revoke its key too, or it registers again)."""
    released = delete_runner(session, get_runner(session, runner_id))
    session.commit()
    if released:
        signal.notify()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/jobs", response_model=AdminJobsPublic)
def jobs(
    admin: AdminUser,
    session: SessionDep,
    status_filter: str | None = None,
    owner_id: RowId | None = None,
    limit: int = 100,
) -> AdminJobsPublic:
    """Everyone's jobs, newest first, with their owners' addresses."""
    found = admin_jobs(session, status=status_filter, owner_id=owner_id, limit=limit)
    return AdminJobsPublic(jobs=found, count=len(found))


@router.get("/users", response_model=list[UserAdminPublic])
def users(admin: AdminUser, session: SessionDep) -> list[UserAdminPublic]:
    return users_admin(session)


@router.post("/users/{user_id}/admin", status_code=status.HTTP_204_NO_CONTENT)
def make_admin(user_id: RowId, admin: AdminUser, session: SessionDep) -> Response:
    set_admin(session, get_user(session, user_id), True)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/users/{user_id}/admin", status_code=status.HTTP_204_NO_CONTENT)
def unmake_admin(user_id: RowId, admin: AdminUser, session: SessionDep) -> Response:
    """Take admin rights away (the last admin keeps them)."""
    set_admin(session, get_user(session, user_id), False)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_user(user_id: RowId, admin: AdminUser, session: SessionDep) -> Response:
    """Delete the user, their keys and sessions; their jobs stay, without an owner."""
    if user_id == admin.id:
        raise Conflict("you cannot delete your own account", code="cannot_delete_self")
    delete_user(session, get_user(session, user_id))
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/keys", response_model=list[ApiKeyPublic])
def keys(admin: AdminUser, session: SessionDep) -> list[ApiKeyPublic]:
    """Every API key, revoked ones included (never the secrets)."""
    return [ApiKeyPublic.model_validate(k, from_attributes=True) for k in list_api_keys(session)]


@router.post("/keys", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
def create_key(body: ApiKeyCreate, admin: AdminUser, session: SessionDep) -> ApiKeyCreated:
    """A runner key, or a user key for any user; the secret is in this answer only."""
    scope = ApiKeyScope(body.scope)
    if scope is ApiKeyScope.USER:
        owner = get_user(session, body.user_id if body.user_id is not None else admin.id or 0)
    elif body.user_id is not None:
        raise InvalidInput("a runner key acts for no user; leave out user_id")
    else:
        owner = None
    new = create_api_key(session, name=body.name, scope=scope, user=owner)
    session.commit()
    return ApiKeyCreated(
        key=new.key, api_key=ApiKeyPublic.model_validate(new.record, from_attributes=True)
    )


@router.delete("/keys/{key_id}", response_model=ApiKeyPublic)
def revoke_key(key_id: RowId, admin: AdminUser, session: SessionDep) -> ApiKeyPublic:
    """The key stops working at once."""
    record = revoke_api_key(session, get_api_key(session, key_id))
    session.commit()
    return ApiKeyPublic.model_validate(record, from_attributes=True)


def _setting_public(name: str, value: object) -> SettingPublic:
    spec = SPECS[name]
    return SettingPublic(
        name=name,
        value=masked_value(spec, value),
        default=masked_value(spec, spec.default),
        description=spec.description,
        secret=spec.secret,
    )


@router.get("/settings", response_model=list[SettingPublic])
def settings(admin: AdminUser, session: SessionDep) -> list[SettingPublic]:
    """The farm settings, secrets masked."""
    return [_setting_public(name, get_setting(session, name)) for name in sorted(SPECS)]


@router.put("/settings/{name}", response_model=SettingPublic)
def change_setting(
    name: str, body: SettingUpdate, admin: AdminUser, session: SessionDep
) -> SettingPublic:
    """Change one setting (OAuth providers, which hold secrets, only from the CLI)."""
    spec = SPECS.get(name)
    if spec is None:
        raise InvalidInput(
            f"there is no setting {name!r}; known: {', '.join(sorted(SPECS))}",
            code="unknown_setting",
        )
    if spec.secret:
        raise InvalidInput(
            f"{name} holds a secret; set it with `framefarm manager config set {name} …`",
            code="secret_setting",
        )
    try:
        value = set_setting(session, name, body.value)
    except ValueError as exc:
        raise InvalidInput(str(exc), code="invalid_setting") from exc
    session.commit()
    return _setting_public(name, value)
