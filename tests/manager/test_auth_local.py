"""Local accounts: sign-in, cookies, CSRF, rate limiting, registration, password change."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, event
from sqlmodel import Session, select, update

from manager.auth.models import AuthSession, LoginAttempt
from manager.auth.ratelimit import MAX_FAILURES_PER_EMAIL, WINDOW
from manager.auth.sessions import CSRF_HEADER, SESSION_COOKIE
from manager.db import session_scope
from manager.models import User, utcnow
from manager.users import get_user_by_email
from tests.manager.auth_helpers import (
    PASSWORD,
    assert_error,
    browser,
    configure,
    engine_of,
    give_password,
    login,
    signed_in_browser,
)
from tests.manager.conftest import Farm
from tests.manager.factories import make_job


def _set_cookie_headers(response) -> list[str]:  # type: ignore[no-untyped-def]
    return response.headers.get_list("set-cookie")


def test_sign_in_sets_a_signed_httponly_lax_cookie_that_expires(farm: Farm):
    configure(farm, localauth=True, session_hours=2)
    give_password(farm, "artist@example.com")
    client = browser(farm)
    response = login(client, "Artist@Example.com ", PASSWORD)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["email"] == "artist@example.com"
    assert body["user"]["has_password"] is True
    assert body["user"]["is_admin"] is False

    session_cookie = next(c for c in _set_cookie_headers(response) if c.startswith(SESSION_COOKIE))
    attributes = session_cookie.lower()
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "max-age=7200" in attributes
    assert "path=/" in attributes
    token, _, signature = client.cookies[SESSION_COOKIE].rpartition(".")
    assert token and signature

    with Session(engine_of(farm)) as session:
        record = session.exec(select(AuthSession)).one()
    assert record.token_hash != token and token not in record.token_hash
    assert timedelta(hours=1, minutes=59) < record.expires_at - utcnow() <= timedelta(hours=2)

    me = client.get("/api/auth/me")
    assert me.status_code == 200
    assert me.json()["authenticated_by"] == "session"
    assert me.json()["csrf_token"] == body["csrf_token"]
    assert client.get("/api/jobs").status_code == 200


def test_password_sign_in_is_off_until_enabled(farm: Farm):
    give_password(farm, "artist@example.com")
    assert_error(login(browser(farm), "artist@example.com"), 403, "localauth_disabled")
    methods = farm.client.get("/api/auth/providers").json()
    assert methods == {"localauth": False, "registration": False, "providers": []}


def test_wrong_password_and_unknown_address_look_the_same(farm: Farm):
    configure(farm, localauth=True)
    give_password(farm, "artist@example.com")
    assert_error(
        login(browser(farm), "artist@example.com", "wrong password"), 401, "invalid_credentials"
    )
    assert_error(login(browser(farm), "nobody@example.com", PASSWORD), 401, "invalid_credentials")
    # A user without a password (OAuth only) cannot sign in with any password.
    assert_error(login(browser(farm), "other@example.com", ""), 422, "invalid_input")
    assert_error(login(browser(farm), "other@example.com", "anything"), 401, "invalid_credentials")


def test_failed_sign_ins_are_rate_limited_per_address(farm: Farm):
    configure(farm, localauth=True)
    give_password(farm, "artist@example.com")
    give_password(farm, "other@example.com")
    client = browser(farm)
    for _ in range(MAX_FAILURES_PER_EMAIL):
        assert_error(login(client, "artist@example.com", "guess"), 401, "invalid_credentials")
    limited = login(client, "artist@example.com", PASSWORD)  # even the right password waits
    assert_error(limited, 429, "too_many_attempts")
    assert 0 < int(limited.headers["Retry-After"]) <= WINDOW.total_seconds()
    assert login(client, "other@example.com").status_code == 200  # others are not locked out

    # Once the failures are older than the window, the address may try again.
    with Session(engine_of(farm)) as session:
        session.exec(update(LoginAttempt).values(created_at=utcnow() - WINDOW - timedelta(1)))
        session.commit()
    assert login(client, "artist@example.com").status_code == 200
    with Session(engine_of(farm)) as session:
        remaining = session.exec(
            select(LoginAttempt).where(LoginAttempt.email == "artist@example.com")
        ).all()
    assert remaining == []  # a success forgets the failures


def test_cookie_requests_that_change_state_need_the_csrf_token(farm: Farm):
    client, csrf = signed_in_browser(farm, "artist@example.com")
    assert_error(client.post("/api/auth/keys", json={"name": "laptop"}), 403, "csrf_failed")
    wrong = {CSRF_HEADER: "0" * 64}
    assert_error(
        client.post("/api/auth/keys", json={"name": "laptop"}, headers=wrong), 403, "csrf_failed"
    )
    made = client.post("/api/auth/keys", json={"name": "laptop"}, headers={CSRF_HEADER: csrf})
    assert made.status_code == 201, made.text
    assert client.get("/api/auth/keys").status_code == 200  # reading needs no token
    # A bearer key needs no CSRF token: browsers never send one on their own.
    bearer = {"Authorization": f"Bearer {made.json()['key']}"}
    assert (
        farm.client.post("/api/auth/keys", json={"name": "script"}, headers=bearer).status_code
        == 201
    )


def test_a_forged_or_ended_session_is_refused(farm: Farm):
    client, csrf = signed_in_browser(farm, "artist@example.com")
    cookie = client.cookies[SESSION_COOKIE]
    token, _, signature = cookie.rpartition(".")

    forged = browser(farm)
    forged.cookies.set(SESSION_COOKIE, f"{token}x.{signature}")
    assert_error(forged.get("/api/auth/me"), 401, "session_expired")

    assert_error(client.post("/api/auth/logout"), 403, "csrf_failed")
    out = client.post("/api/auth/logout", headers={CSRF_HEADER: csrf})
    assert out.status_code == 204
    assert SESSION_COOKIE not in client.cookies
    replay = browser(farm)
    replay.cookies.set(SESSION_COOKIE, cookie)
    assert_error(replay.get("/api/auth/me"), 401, "session_expired")


def test_an_expired_session_is_refused(farm: Farm):
    client, _ = signed_in_browser(farm, "artist@example.com")
    with Session(engine_of(farm)) as session:
        session.exec(update(AuthSession).values(expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    assert_error(client.get("/api/auth/me"), 401, "session_expired")


def test_registration_is_off_by_default_then_makes_plain_users(farm: Farm):
    configure(farm, localauth=True)
    new = {"email": "new@example.com", "password": "a long password", "name": "New"}
    assert_error(browser(farm).post("/api/auth/register", json=new), 403, "registration_disabled")

    configure(farm, registration=True)
    assert farm.client.get("/api/auth/providers").json()["registration"] is True
    client = browser(farm)
    made = client.post("/api/auth/register", json=new)
    assert made.status_code == 201, made.text
    assert made.json()["user"] | {"id": 0, "created_at": ""} == {
        "id": 0,
        "email": "new@example.com",
        "name": "New",
        "is_admin": False,
        "has_password": True,
        "providers": [],
        "created_at": "",
    }
    assert client.get("/api/auth/me").json()["user"]["email"] == "new@example.com"
    assert_error(browser(farm).post("/api/auth/register", json=new), 409, "user_exists")
    weak = {"email": "weak@example.com", "password": "short"}
    assert_error(browser(farm).post("/api/auth/register", json=weak), 422, "weak_password")
    bad = {"email": "not-an-address", "password": "a long password"}
    assert_error(browser(farm).post("/api/auth/register", json=bad), 422, "invalid_input")
    with Session(engine_of(farm)) as session:
        assert session.exec(select(User).where(User.email == "weak@example.com")).first() is None


def test_password_change_checks_the_old_one_and_signs_out_elsewhere(farm: Farm):
    client, csrf = signed_in_browser(farm, "artist@example.com")
    elsewhere = browser(farm)
    assert login(elsewhere, "artist@example.com").status_code == 200
    headers = {CSRF_HEADER: csrf}

    wrong = {"current_password": "not it", "new_password": "a brand new password"}
    assert_error(
        client.post("/api/auth/password/change", json=wrong, headers=headers), 403, "wrong_password"
    )
    weak = {"current_password": PASSWORD, "new_password": "short"}
    assert_error(
        client.post("/api/auth/password/change", json=weak, headers=headers), 422, "weak_password"
    )
    good = {"current_password": PASSWORD, "new_password": "a brand new password"}
    assert client.post("/api/auth/password/change", json=good, headers=headers).status_code == 204

    assert client.get("/api/auth/me").status_code == 200  # this browser stays signed in
    assert_error(elsewhere.get("/api/auth/me"), 401, "session_expired")
    assert_error(login(browser(farm), "artist@example.com"), 401, "invalid_credentials")
    assert login(browser(farm), "artist@example.com", "a brand new password").status_code == 200


def test_an_account_without_password_may_set_one(farm: Farm):
    configure(farm, localauth=True)
    headers = farm.auth(farm.other_user_key)  # other@example.com has no password yet
    body = {"new_password": "my first password"}
    assert (
        farm.client.post("/api/auth/password/change", json=body, headers=headers).status_code == 204
    )
    assert login(browser(farm), "other@example.com", "my first password").status_code == 200


def test_a_session_acts_as_its_user_for_jobs(farm: Farm):
    with session_scope(engine_of(farm)) as session:
        theirs, _ = make_job(session, name="someone else's")
        theirs.owner_id = get_user_by_email(session, "other@example.com").id
        session.add(theirs)
        session.flush()
        their_id = theirs.id
    client, csrf = signed_in_browser(farm, "artist@example.com")
    assert client.get("/api/jobs").json()["count"] == 0
    assert_error(client.get(f"/api/jobs/{their_id}"), 404, "job_not_found")
    paused = client.post(f"/api/jobs/{their_id}/pause", headers={CSRF_HEADER: csrf})
    assert_error(paused, 404, "job_not_found")
    admin, admin_csrf = signed_in_browser(farm, "admin@example.com")
    assert (
        admin.post(f"/api/jobs/{their_id}/pause", headers={CSRF_HEADER: admin_csrf}).status_code
        == 200
    )


def test_a_signed_in_request_reads_its_session_and_its_user_in_one_query(farm: Farm):
    client, _ = signed_in_browser(farm, "artist@example.com")
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(" ".join(statement.split()).lower())

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        me = client.get("/api/auth/me")
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert me.status_code == 200, me.text
    assert me.json()["user"]["email"] == "artist@example.com"
    asks_for_session = [s for s in statements if "from auth_sessions" in s]
    assert len(asks_for_session) == 1, statements
    assert "join users" in asks_for_session[0]
    assert not any(s.startswith("select") and "from users where" in s for s in statements)
