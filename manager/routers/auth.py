"""Sign-in API: passwords, OAuth / OpenID Connect, the signed-in user, and their API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse
from sqlalchemy import Engine
from sqlmodel import Session

from manager.apikeys import create_api_key, get_api_key, list_api_keys, revoke_api_key
from manager.auth.accounts import register_user, user_for_identity, user_public
from manager.auth.keyring import Keyring
from manager.auth.oauth import (
    STATE_COOKIE,
    STATE_MAX_AGE,
    OAuthClients,
    OAuthFailed,
    begin_sign_in,
    check_state,
    identity_from_callback,
)
from manager.auth.passwords import authenticate, set_password, verify_password
from manager.auth.providers import Provider, configured_providers, get_provider
from manager.auth.ratelimit import check_login_allowed, clear_failed_logins, record_failed_login
from manager.auth.schemas import (
    ApiKeyCreated,
    ApiKeyName,
    ApiKeyPublic,
    LoginRequest,
    Me,
    PasswordChange,
    ProviderPublic,
    RegisterRequest,
    SignedIn,
    SignInMethods,
)
from manager.auth.sessions import (
    clear_session_cookies,
    csrf_token_for,
    end_session,
    end_sessions_of,
    set_session_cookies,
    start_session,
)
from manager.auth.settings import localauth_enabled, registration_open, session_lifetime
from manager.db import session_scope
from manager.deps import CurrentUser, SessionDep, begin_writes
from manager.errors import Forbidden, NotFound, Unauthorized
from manager.models import ApiKey, User
from manager.schemas import RowId
from shared.wire import ApiKeyScope

router = APIRouter(prefix="/api/auth", tags=["auth"])


def _keyring(request: Request) -> Keyring:
    keyring: Keyring = request.app.state.keyring
    return keyring


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def _is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def _safe_next(path: str) -> str:
    """Only a path on this site: an open redirect would help phishing."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def _sign_in(
    session: Session, request: Request, response: Response, user: User, *, method: str
) -> SignedIn:
    new = start_session(
        session,
        _keyring(request),
        user,
        method=method,
        lifetime=session_lifetime(session),
        ip=_client_ip(request),
        user_agent=request.headers.get("user-agent", ""),
    )
    session.commit()
    set_session_cookies(response, _keyring(request), new, secure=_is_https(request))
    return SignedIn(
        user=user_public(session, user),
        csrf_token=new.csrf_token,
        expires_at=new.record.expires_at,
    )


def _require_localauth(session: Session) -> None:
    if not localauth_enabled(session):
        raise Forbidden(
            "password sign-in is off on this farm; sign in with a provider, or ask an admin "
            "to run `framefarm manager config enable localauth`",
            code="localauth_disabled",
        )


@router.get("/providers", response_model=SignInMethods)
def sign_in_methods(request: Request, session: SessionDep) -> SignInMethods:
    """How one can sign in here: passwords, registration, and which providers."""
    return SignInMethods(
        localauth=localauth_enabled(session),
        registration=registration_open(session) and localauth_enabled(session),
        providers=[
            ProviderPublic(
                name=p.name,
                label=p.label,
                login_url=request.app.url_path_for("oauth_login", provider=p.name),
            )
            for p in configured_providers(session).values()
        ],
    )


@router.post("/login", response_model=SignedIn)
def login(
    body: LoginRequest, request: Request, response: Response, session: SessionDep
) -> SignedIn:
    """Sign in with email and password; sets the session and CSRF cookies."""
    _require_localauth(session)
    email, ip = body.email.strip().lower(), _client_ip(request)
    check_login_allowed(session, email=email, ip=ip)
    user = authenticate(session, email, body.password)
    begin_writes(session)  # the password is checked without holding the write lock
    if user is None:
        record_failed_login(session, email=email, ip=ip)
        session.commit()
        raise Unauthorized("wrong email or password", code="invalid_credentials")
    clear_failed_logins(session, email=email)
    return _sign_in(session, request, response, user, method="password")


@router.post("/register", response_model=SignedIn, status_code=status.HTTP_201_CREATED)
def register(
    body: RegisterRequest, request: Request, response: Response, session: SessionDep
) -> SignedIn:
    """Create an account (when the farm allows registration) and sign in."""
    _require_localauth(session)
    begin_writes(session)
    if not registration_open(session):
        raise Forbidden(
            "this farm does not take registrations; ask an admin for an account",
            code="registration_disabled",
        )
    user = register_user(session, email=body.email, password=body.password, name=body.name)
    return _sign_in(session, request, response, user, method="register")


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request, user: CurrentUser, session: SessionDep) -> Response:
    """End this browser's session (an API key stays valid: revoke it to stop it)."""
    record = getattr(request.state, "auth_session", None)
    if record is not None:
        end_session(session, record)
        session.commit()
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookies(response)
    return response


@router.get("/me", response_model=Me)
def me(request: Request, user: CurrentUser, session: SessionDep) -> Me:
    """Who this request is signed in as, and the CSRF token of a session."""
    token = getattr(request.state, "session_token", None)
    return Me(
        user=user_public(session, user),
        authenticated_by="session" if token else "api_key",
        csrf_token=csrf_token_for(_keyring(request), token) if token else None,
    )


@router.post("/password/change", status_code=status.HTTP_204_NO_CONTENT)
def change_password(
    body: PasswordChange, request: Request, user: CurrentUser, session: SessionDep
) -> Response:
    """Change (or, for an account made through a provider, set) the password.

    Every other session of the account ends; API keys stay.
    """
    if user.password_hash is not None:
        ip = _client_ip(request)
        check_login_allowed(session, email=user.email, ip=ip)
        if not verify_password(user.password_hash, body.current_password or ""):
            record_failed_login(session, email=user.email, ip=ip)
            session.commit()
            raise Forbidden("the current password is wrong", code="wrong_password")
    set_password(session, user, body.new_password)
    end_sessions_of(session, user, keep=getattr(request.state, "auth_session", None))
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _key_public(record: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(record, from_attributes=True)


@router.get("/keys", response_model=list[ApiKeyPublic])
def my_keys(user: CurrentUser, session: SessionDep) -> list[ApiKeyPublic]:
    """The signed-in user's API keys, revoked ones included."""
    return [_key_public(k) for k in list_api_keys(session, user=user)]


@router.post("/keys", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
def create_my_key(body: ApiKeyName, user: CurrentUser, session: SessionDep) -> ApiKeyCreated:
    """A user key for the add-on or a script; the secret is in this answer only."""
    new = create_api_key(session, name=body.name, scope=ApiKeyScope.USER, user=user)
    session.commit()
    return ApiKeyCreated(key=new.key, api_key=_key_public(new.record))


@router.delete("/keys/{key_id}", response_model=ApiKeyPublic)
def revoke_my_key(key_id: RowId, user: CurrentUser, session: SessionDep) -> ApiKeyPublic:
    record = get_api_key(session, key_id)
    if record.user_id != user.id:
        raise NotFound(f"there is no API key {key_id}", code="api_key_not_found")
    revoke_api_key(session, record)
    session.commit()
    return _key_public(record)


@router.get("/{provider}/login", name="oauth_login", response_class=RedirectResponse)
async def oauth_login(
    provider: str,
    request: Request,
    session: SessionDep,
    next_path: Annotated[str, Query(alias="next", description="where to land afterwards")] = "/",
) -> RedirectResponse:
    """Go to the provider to sign in; it sends the browser back to the callback."""
    found = await run_in_threadpool(get_provider, session, provider)
    clients: OAuthClients = request.app.state.oauth_clients
    redirect_uri = found.redirect_url or str(request.url_for("oauth_callback", provider=provider))
    url, cookie = await begin_sign_in(
        clients.client_for(found),
        _keyring(request),
        found,
        redirect_uri=redirect_uri,
        next_path=_safe_next(next_path),
    )
    response = RedirectResponse(url, status_code=status.HTTP_302_FOUND)
    response.set_cookie(
        STATE_COOKIE,
        cookie,
        max_age=STATE_MAX_AGE,
        httponly=True,
        samesite="lax",
        secure=_is_https(request),
        path="/api/auth/",
    )
    return response


@router.get("/{provider}/callback", name="oauth_callback", response_class=RedirectResponse)
async def oauth_callback(
    provider: str,
    request: Request,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
) -> RedirectResponse:
    """The provider's answer: check ``state``, verify who signed in, start a session."""
    engine: Engine = request.app.state.write_engine
    found = await run_in_threadpool(_provider_in_new_session, request.app.state.engine, provider)
    keyring = _keyring(request)
    state_data = check_state(keyring, found, request.cookies.get(STATE_COOKIE), state)
    if error or not code:
        raise OAuthFailed(
            f"{found.label} did not sign you in: {error_description or error or 'no code'}",
            code="oauth_denied",
        )
    clients: OAuthClients = request.app.state.oauth_clients
    identity = await identity_from_callback(
        clients.client_for(found), found, code=code, state_data=state_data
    )

    def link_and_sign_in(response: Response) -> None:
        with session_scope(engine) as session:
            user = user_for_identity(
                session, found.name, identity, registration_open=registration_open(session)
            )
            _sign_in(session, request, response, user, method=found.name)

    response = RedirectResponse(_safe_next(state_data["next"]), status_code=status.HTTP_302_FOUND)
    await run_in_threadpool(link_and_sign_in, response)
    response.delete_cookie(STATE_COOKIE, path="/api/auth/", httponly=True, samesite="lax")
    return response


def _provider_in_new_session(engine: Engine, name: str) -> Provider:
    with session_scope(engine) as session:
        return get_provider(session, name)
