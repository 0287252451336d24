"""A real OAuth 2.0 / OpenID Connect provider on 127.0.0.1 for tests, built on authlib's server.

It speaks the protocol over real HTTP, as Google or Keycloak would: a discovery document,
the authorization-code grant with PKCE and nonce, client authentication at the token
endpoint (HTTP Basic or form), RS256-signed ID tokens and their JWKS, the userinfo endpoint,
and a Discord-shaped ``/api/users/@me``. The one thing it does not do is show a sign-in page:
a test says beforehand who signs in there (``sign_in_as``), and the authorization endpoint
answers at once with the redirect back to the client, as a provider does for someone who is
already signed in and has consented.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from authlib.common.security import generate_token
from authlib.oauth2 import AuthorizationServer, OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Request
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import RSAKey


@dataclass
class ProviderUser:
    """Someone with an account at the provider."""

    sub: str
    email: str
    email_verified: bool = True
    name: str = ""


@dataclass
class Client(ClientMixin):  # type: ignore[misc]
    client_id: str
    client_secret: str
    redirect_uris: list[str]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        allowed = {"openid", "email", "profile", "identify"}
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return client_secret == self.client_secret

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class AuthorizationCode:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: ProviderUser
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class _HttpRequest(OAuth2Request):  # type: ignore[misc]
    def __init__(
        self, method: str, uri: str, headers: Any, args: dict[str, str], form: dict[str, str]
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self._args, self._form = args, form
        self.payload = BasicOAuth2Payload({**args, **form})

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def save_authorization_code(self, code: str, request: Any) -> None:
        data = request.payload.data
        self.server.provider.codes[code] = AuthorizationCode(
            code=code,
            client_id=request.client.get_client_id(),
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope,
            user=request.user,
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
        )

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        found = self.server.provider.codes.get(code)
        return found if found and found.client_id == client.client_id else None

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        self.server.provider.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: AuthorizationCode) -> ProviderUser:
        return authorization_code.user


class _OpenIDCode(OpenIDCode):  # type: ignore[misc]
    def __init__(self, provider: LocalOIDCProvider) -> None:
        super().__init__(require_nonce=True)
        self.provider = provider

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return nonce in self.provider.used_nonces

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        return self.provider.signing_key

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": "RS256", "kid": self.provider.signing_key.kid or ""}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {"iss": self.provider.issuer, "aud": [client.client_id]}

    def generate_user_info(self, user: ProviderUser, scope: str) -> UserInfo:
        if not self.provider.email_in_id_token:
            return UserInfo(sub=user.sub)
        return UserInfo(self.provider.claims_of(user))


class _Server(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, provider: LocalOIDCProvider) -> None:
        super().__init__(scopes_supported=["openid", "email", "profile", "identify"])
        self.provider = provider
        self.register_grant(_CodeGrant, [CodeChallenge(required=False), _OpenIDCode(provider)])
        self.register_token_generator(
            "default",
            BearerTokenGenerator(lambda client, grant_type, user, scope: generate_token(42)),
        )

    def query_client(self, client_id: str) -> Client | None:
        return self.provider.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        self.provider.tokens[token["access_token"]] = request.user

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request

    def create_json_request(self, request: Any) -> Any:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, Any]:
        return status, body, headers

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


class LocalOIDCProvider:
    """Start with ``start()``, register clients, say who signs in, ``stop()`` at the end."""

    def __init__(self) -> None:
        self.signing_key = RSAKey.generate_key(2048, parameters={"kid": "test-1", "use": "sig"})
        self.published_key = self.signing_key
        """The key in the JWKS; a test sets another one to make ID tokens fail to verify."""
        self.clients: dict[str, Client] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.tokens: dict[str, ProviderUser] = {}
        self.used_nonces: set[str] = set()
        self.signed_in: ProviderUser | None = None
        self.email_in_id_token = True
        """False: the ID token names only the subject, the address comes from userinfo."""
        self.requests: list[str] = []
        self._server = _Server(self)
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.issuer = ""

    # -- what tests use --------------------------------------------------------------------

    def start(self) -> str:
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.issuer = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()
        return self.issuer

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def add_client(self, client_id: str, client_secret: str, redirect_uris: list[str]) -> Client:
        self.clients[client_id] = Client(client_id, client_secret, list(redirect_uris))
        return self.clients[client_id]

    def sign_in_as(self, user: ProviderUser | None) -> None:
        """Who is signed in at the provider (what its sign-in page would ask)."""
        self.signed_in = user

    def claims_of(self, user: ProviderUser) -> dict[str, Any]:
        return {
            "sub": user.sub,
            "email": user.email,
            "email_verified": user.email_verified,
            "name": user.name,
        }

    # -- the endpoints ----------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "email", "email_verified", "name"],
        }

    def authorize(self, request: _HttpRequest) -> tuple[int, Any, Any]:
        if self.signed_in is None:
            return 401, {"error": "login_required"}, []
        try:
            grant = self._server.get_consent_grant(request=request, end_user=self.signed_in)
        except OAuth2Error as error:
            return 400, dict(error.get_body()), []
        nonce = request.payload.data.get("nonce")
        result = self._server.create_authorization_response(
            request=request, grant_user=self.signed_in, grant=grant
        )
        if nonce:
            self.used_nonces.add(nonce)
        return result  # type: ignore[no-any-return]

    def token(self, request: _HttpRequest) -> tuple[int, Any, Any]:
        return self._server.create_token_response(request)  # type: ignore[no-any-return]

    def user_of_bearer(self, authorization: str | None) -> ProviderUser | None:
        scheme, _, token = (authorization or "").partition(" ")
        return self.tokens.get(token) if scheme.lower() == "bearer" else None


def _handler_for(provider: LocalOIDCProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _request(self, form: dict[str, str]) -> _HttpRequest:
            url = provider.issuer + self.path
            args = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
            return _HttpRequest(self.command, url, self.headers, args, form)

        def _send(self, status: int, body: Any, headers: Any = ()) -> None:
            data = json.dumps(body).encode() if isinstance(body, dict) else str(body).encode()
            self.send_response(status)
            sent = {name.lower() for name, _ in headers}
            for name, value in headers:
                self.send_header(name, value)
            if "content-type" not in sent and isinstance(body, dict):
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            provider.requests.append(f"GET {path}")
            if path == "/.well-known/openid-configuration":
                self._send(200, provider.discovery())
            elif path == "/jwks":
                self._send(200, {"keys": [provider.published_key.as_dict(private=False)]})
            elif path == "/authorize":
                self._send(*provider.authorize(self._request({})))
            elif path in ("/userinfo", "/api/users/@me"):
                user = provider.user_of_bearer(self.headers.get("Authorization"))
                if user is None:
                    self._send(401, {"error": "invalid_token"})
                elif path == "/userinfo":
                    self._send(200, provider.claims_of(user))
                else:  # Discord's shape
                    self._send(
                        200,
                        {
                            "id": user.sub,
                            "username": user.name,
                            "email": user.email,
                            "verified": user.email_verified,
                        },
                    )
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            provider.requests.append(f"POST {path}")
            length = int(self.headers.get("Content-Length") or 0)
            form = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
            if path == "/token":
                self._send(*provider.token(self._request(form)))
            else:
                self._send(404, {"error": "not_found"})

    return Handler
