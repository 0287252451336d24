"""OAuth / OpenID Connect sign-in end to end, against a local provider over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from joserfc.jwk import RSAKey
from sqlmodel import Session, select

from manager.auth import providers
from manager.auth.models import OAuthIdentity
from manager.auth.oauth import STATE_COOKIE, build_client
from manager.auth.providers import OAuth2Endpoints, save_builtin_provider, save_oidc_provider
from manager.auth.sessions import SESSION_COOKIE
from manager.db import session_scope
from tests.manager.auth_helpers import (
    PASSWORD,
    assert_error,
    browser,
    configure,
    engine_of,
    login,
)
from tests.manager.conftest import Farm
from tests.oidc_provider import LocalOIDCProvider, ProviderUser

CLIENT_ID, CLIENT_SECRET = "framefarm-test", "s3cret-of-the-test-client"
ALICE = ProviderUser(sub="alice-1", email="artist@example.com", name="Alice")


@pytest.fixture(scope="module")
def provider() -> Iterator[LocalOIDCProvider]:
    local = LocalOIDCProvider()
    local.start()
    yield local
    local.stop()


@pytest.fixture
def oidc(farm: Farm, provider: LocalOIDCProvider) -> LocalOIDCProvider:
    """The local provider, known to the farm as ``local`` and the farm to it as a client."""
    provider.requests.clear()
    provider.published_key = provider.signing_key
    provider.email_in_id_token = True
    provider.sign_in_as(ALICE)
    provider.add_client(
        CLIENT_ID,
        CLIENT_SECRET,
        [
            "http://testserver/api/auth/local/callback",
            "http://testserver/api/auth/discord/callback",
        ],
    )
    with session_scope(engine_of(farm)) as session:
        save_oidc_provider(
            session,
            farm.client.app.state.keyring,  # type: ignore[attr-defined]
            "local",
            discovery_url=provider.issuer,  # the issuer; the well-known path is added
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            label="Studio SSO",
        )
    return provider


def start(client: TestClient, name: str = "local", next_path: str = "/") -> str:
    """Click "sign in with …": the manager sends the browser to the provider."""
    response = client.get(
        f"/api/auth/{name}/login", params={"next": next_path}, follow_redirects=False
    )
    assert response.status_code == 302, response.text
    assert client.cookies.get(STATE_COOKIE)
    return response.headers["location"]


def at_provider(url: str) -> str:
    """The browser at the provider, which sends it back to the manager's callback."""
    response = httpx.get(url, follow_redirects=False)
    assert response.status_code == 302, response.text
    return response.headers["location"]


def back(client: TestClient, callback_url: str) -> httpx.Response:
    parts = urlsplit(callback_url)
    assert parts.netloc == "testserver"
    return client.get(f"{parts.path}?{parts.query}", follow_redirects=False)


def sign_in(client: TestClient, name: str = "local", next_path: str = "/") -> httpx.Response:
    return back(client, at_provider(start(client, name, next_path)))


def test_openid_connect_sign_in_end_to_end(farm: Farm, oidc: LocalOIDCProvider):
    listed = farm.client.get("/api/auth/providers").json()["providers"]
    assert listed == [
        {"name": "local", "label": "Studio SSO", "login_url": "/api/auth/local/login"}
    ]
    client = browser(farm)
    authorize = start(client, next_path="/jobs/7")
    query = parse_qs(urlsplit(authorize).query)
    assert authorize.startswith(f"{oidc.issuer}/authorize?")
    assert query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == ["http://testserver/api/auth/local/callback"]
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    assert set(query["scope"][0].split()) == {"openid", "email", "profile"}

    done = back(client, at_provider(authorize))
    assert done.status_code == 302, done.text
    assert done.headers["location"] == "/jobs/7"
    assert client.cookies.get(SESSION_COOKIE)
    me = client.get("/api/auth/me").json()
    assert me["user"]["email"] == "artist@example.com"
    assert me["user"]["providers"] == ["local"]
    assert me["authenticated_by"] == "session"
    # The manager really talked to the provider: discovery, token exchange, signing keys.
    assert {"GET /.well-known/openid-configuration", "POST /token", "GET /jwks"} <= set(
        oidc.requests
    )

    # Next time the link is by the provider's subject, even if the address changed there.
    oidc.sign_in_as(ProviderUser(sub="alice-1", email="alice@elsewhere.example", name="Alice"))
    again = browser(farm)
    assert sign_in(again).status_code == 302
    assert again.get("/api/auth/me").json()["user"]["email"] == "artist@example.com"


def test_a_bad_state_is_refused(farm: Farm, oidc: LocalOIDCProvider):
    client = browser(farm)
    callback = at_provider(start(client))
    parts = urlsplit(callback)
    params = parse_qs(parts.query)
    forged = client.get(
        parts.path, params={"code": params["code"][0], "state": "forged"}, follow_redirects=False
    )
    assert_error(forged, 400, "oauth_state_mismatch")
    assert SESSION_COOKIE not in client.cookies

    # The callback in a browser that never started a sign-in (an attacker's link).
    assert_error(back(browser(farm), callback), 400, "oauth_state_missing")
    # A state cookie that was altered is refused too.
    tampered = browser(farm)
    tampered.cookies.set(STATE_COOKIE, client.cookies[STATE_COOKIE] + "x", path="/api/auth/")
    assert_error(back(tampered, callback), 400, "oauth_state_missing")
    assert_error(client.get("/api/auth/me"), 401, "missing_api_key")
    assert "POST /token" not in oidc.requests  # refused before the code was ever used

    assert back(client, callback).status_code == 302  # the genuine answer still signs in
    assert client.get("/api/auth/me").json()["user"]["email"] == "artist@example.com"


def test_the_provider_saying_no_is_reported(farm: Farm, oidc: LocalOIDCProvider):
    client = browser(farm)
    state = parse_qs(urlsplit(start(client)).query)["state"][0]
    denied = client.get(
        "/api/auth/local/callback",
        params={"error": "access_denied", "error_description": "user said no", "state": state},
        follow_redirects=False,
    )
    assert_error(denied, 400, "oauth_denied")
    assert "user said no" in denied.json()["message"]


def test_an_id_token_signed_by_someone_else_is_refused(farm: Farm, oidc: LocalOIDCProvider):
    impostor = RSAKey.generate_key(2048, parameters={"kid": oidc.signing_key.kid, "use": "sig"})
    oidc.published_key = impostor  # the JWKS no longer holds the key the tokens are signed with
    client = browser(farm)
    assert_error(sign_in(client), 400, "oauth_failed")
    assert SESSION_COOKIE not in client.cookies


def test_unverified_or_unknown_addresses_get_no_account(farm: Farm, oidc: LocalOIDCProvider):
    oidc.sign_in_as(ProviderUser(sub="mallory", email="artist@example.com", email_verified=False))
    assert_error(sign_in(browser(farm)), 403, "oauth_email_unverified")

    oidc.sign_in_as(ProviderUser(sub="stranger", email="stranger@example.com"))
    assert_error(sign_in(browser(farm)), 403, "no_account")

    configure(farm, registration=True)
    client = browser(farm)
    assert sign_in(client).status_code == 302
    user = client.get("/api/auth/me").json()["user"]
    assert user["email"] == "stranger@example.com"
    assert user["is_admin"] is False and user["has_password"] is False


def test_discord_sign_in_uses_its_user_endpoint(
    farm: Farm, oidc: LocalOIDCProvider, monkeypatch: pytest.MonkeyPatch
):
    # Discord's endpoints, moved to the local provider, which answers in Discord's shape.
    monkeypatch.setattr(
        providers,
        "DISCORD_ENDPOINTS",
        OAuth2Endpoints(
            authorize_url=f"{oidc.issuer}/authorize",
            token_url=f"{oidc.issuer}/token",
            userinfo_url=f"{oidc.issuer}/api/users/@me",
        ),
    )
    with session_scope(engine_of(farm)) as session:
        save_builtin_provider(
            session,
            farm.client.app.state.keyring,  # type: ignore[attr-defined]
            "discord",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
        )
    oidc.sign_in_as(ProviderUser(sub="80351110224678912", email="other@example.com", name="nelly"))
    client = browser(farm)
    authorize = start(client, "discord")
    assert set(parse_qs(urlsplit(authorize).query)["scope"][0].split()) == {"identify", "email"}
    assert back(client, at_provider(authorize)).status_code == 302
    assert client.get("/api/auth/me").json()["user"]["email"] == "other@example.com"
    assert "GET /api/users/@me" in oidc.requests


def test_a_self_registered_address_goes_to_whoever_proves_it(farm: Farm, oidc: LocalOIDCProvider):
    configure(farm, localauth=True, registration=True)
    squatter = browser(farm)
    claim = {"email": "victim@example.com", "password": PASSWORD}
    assert squatter.post("/api/auth/register", json=claim).status_code == 201

    oidc.sign_in_as(ProviderUser(sub="victim", email="victim@example.com"))
    owner = browser(farm)
    assert sign_in(owner).status_code == 302
    assert owner.get("/api/auth/me").json()["user"]["has_password"] is False
    assert_error(squatter.get("/api/auth/me"), 401, "session_expired")
    assert_error(login(browser(farm), "victim@example.com"), 401, "invalid_credentials")

    # An account an admin made is linked as it is: nothing is dropped.
    oidc.sign_in_as(ALICE)
    assert sign_in(browser(farm)).status_code == 302
    with Session(engine_of(farm)) as session:
        links = session.exec(select(OAuthIdentity.subject)).all()
    assert sorted(links) == ["alice-1", "victim"]


def test_only_local_paths_are_landed_on(farm: Farm, oidc: LocalOIDCProvider):
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        assert sign_in(browser(farm), next_path=evil).headers["location"] == "/"


def test_an_unknown_provider_is_a_404(farm: Farm):
    assert_error(
        farm.client.get("/api/auth/nope/login", follow_redirects=False), 404, "unknown_provider"
    )
    assert_error(farm.client.get("/api/auth/nope/callback"), 404, "unknown_provider")


def test_the_address_comes_from_userinfo_when_the_id_token_lacks_it(
    farm: Farm, oidc: LocalOIDCProvider
):
    oidc.email_in_id_token = False
    client = browser(farm)
    assert sign_in(client).status_code == 302
    assert client.get("/api/auth/me").json()["user"]["email"] == "artist@example.com"
    assert "GET /userinfo" in oidc.requests


def test_an_unreachable_provider_is_a_502(farm: Farm, provider: LocalOIDCProvider):
    with session_scope(engine_of(farm)) as session:
        save_oidc_provider(
            session,
            farm.client.app.state.keyring,  # type: ignore[attr-defined]
            "down",
            discovery_url="http://127.0.0.1:9/",  # the discard port: nothing listens
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
        )
    response = browser(farm).get("/api/auth/down/login", follow_redirects=False)
    assert_error(response, 502, "oauth_provider_unreachable")


def test_google_and_discord_clients_point_at_the_real_providers(farm: Farm):
    keyring = farm.client.app.state.keyring  # type: ignore[attr-defined]
    with session_scope(engine_of(farm)) as session:
        google = save_builtin_provider(
            session, keyring, "google", client_id="g", client_secret="gs"
        )
        discord = save_builtin_provider(
            session, keyring, "discord", client_id="d", client_secret="ds"
        )
    google_client = build_client(google, google.client_secret(keyring))
    assert google_client._server_metadata_url == providers.GOOGLE_DISCOVERY_URL
    assert google_client.client_kwargs["scope"] == "openid email profile"
    assert google_client.client_secret == "gs"
    discord_client = build_client(discord, discord.client_secret(keyring))
    assert discord_client.authorize_url == "https://discord.com/oauth2/authorize"
    assert discord_client.access_token_url == "https://discord.com/api/oauth2/token"
    assert providers.DISCORD_ENDPOINTS.userinfo_url == "https://discord.com/api/users/@me"
    assert discord_client.client_kwargs["scope"] == "identify email"
