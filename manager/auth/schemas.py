"""What the auth and admin APIs accept and return."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

from manager.schemas import JobPublic, RowId

Email = Annotated[
    str,
    BeforeValidator(lambda v: v.strip().lower() if isinstance(v, str) else v),
    Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
]


class LoginRequest(BaseModel):
    email: Email
    password: str = Field(min_length=1, max_length=1024)


class RegisterRequest(LoginRequest):
    name: str = Field("", max_length=200)


class PasswordChange(BaseModel):
    current_password: str | None = Field(
        None, max_length=1024, description="needed when the account has a password"
    )
    new_password: str = Field(max_length=1024)


class UserPublic(BaseModel):
    id: int
    email: str
    name: str
    is_admin: bool
    has_password: bool
    providers: list[str] = Field(description="OAuth providers linked to this account")
    created_at: datetime


class SignedIn(BaseModel):
    user: UserPublic
    csrf_token: str = Field(description="send it back in X-CSRF-Token on requests that change")
    expires_at: datetime


class Me(BaseModel):
    user: UserPublic
    authenticated_by: Literal["session", "api_key"]
    csrf_token: str | None = Field(None, description="for session (cookie) requests only")


class ProviderPublic(BaseModel):
    name: str
    label: str
    login_url: str


class SignInMethods(BaseModel):
    localauth: bool
    registration: bool
    providers: list[ProviderPublic]


class ApiKeyPublic(BaseModel):
    id: int
    name: str
    prefix: str = Field(description="the key's first characters, to recognise it")
    scope: str
    user_id: int | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyName(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="what the key is for")


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scope: Literal["user", "runner"] = "user"
    user_id: RowId | None = Field(None, description="admins only: the user a user key acts as")


class ApiKeyCreated(BaseModel):
    key: str = Field(description="the secret, shown only this once")
    api_key: ApiKeyPublic


# -- admin ------------------------------------------------------------------------------


class UserAdminPublic(UserPublic):
    api_keys: int = Field(description="keys not revoked")
    jobs: int


class RunnerAdminPublic(BaseModel):
    id: int
    name: str
    status: str
    enabled: bool
    version: str
    platform: str
    blender: dict[str, Any]
    task_types: list[str]
    tags: list[str]
    api_key_id: int | None
    active_tasks: list[int]
    registered_at: datetime
    last_seen_at: datetime | None


class AdminJobPublic(JobPublic):
    owner_email: str | None


class AdminJobsPublic(BaseModel):
    jobs: list[AdminJobPublic]
    count: int


class FarmStats(BaseModel):
    users: int
    admins: int
    api_keys: int = Field(description="keys not revoked")
    runners: dict[str, int] = Field(description="total, and by status; disabled counted apart")
    jobs: dict[str, int] = Field(description="by status")
    tasks: dict[str, int] = Field(description="by status")


class SettingPublic(BaseModel):
    name: str
    value: Any
    default: Any
    description: str
    secret: bool


class SettingUpdate(BaseModel):
    value: str = Field(description="as on the command line, e.g. 'true' or '5'")
