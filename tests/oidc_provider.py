"""A local OpenID Connect provider for the single sign-on tests: discovery, authorization (auto-approved for the
user the test chose), token (authorization code + PKCE S256, client_secret_basic or _post), JWKS and userinfo.

ID tokens are signed with an RSA key through joserfc (the JOSE library of the Authlib project). A test can make the
provider misbehave (`tamper`: wrong nonce, audience, issuer, key, expired token, ...) to check that each is refused.
Serve it with `serve_provider()` (a thread of the test process, on 127.0.0.1).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import uvicorn
from fastapi import FastAPI, Form, Header, Request
from fastapi.responses import JSONResponse, RedirectResponse
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.conftest import free_port, served


@dataclass
class OidcUser:
    """Who the provider signs in: each authorization request is approved at once for this person."""

    sub: str
    email: str
    email_verified: Any = True
    amr: list[str] | None = None
    # False: the e-mail claims go only to the userinfo endpoint, as some providers do.
    email_in_id_token: bool = True


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    code_challenge: str | None
    user: OidcUser


@dataclass
class LocalProvider:
    client_id: str
    client_secret: str
    redirect_uris: set[str] = field(default_factory=set)
    issuer: str = ""
    user: OidcUser | None = None
    # Claim overrides, or "sign_with": "other_key" | "hs256"; applied to the next ID tokens.
    tamper: dict[str, Any] = field(default_factory=dict)
    auth_methods: tuple[str, ...] = ("client_secret_basic", "client_secret_post")
    requests: list[str] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    key: RSAKey = field(
        default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "test-1", "use": "sig"}, private=True)
    )
    _codes: dict[str, _Grant] = field(default_factory=dict)
    _access_tokens: dict[str, OidcUser] = field(default_factory=dict)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def _log(request: Request, call_next: Any) -> Any:
            self.requests.append(request.url.path)
            return await call_next(request)

        @app.get("/.well-known/openid-configuration")
        def discovery() -> dict[str, Any]:
            return {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "userinfo_endpoint": f"{self.issuer}/userinfo",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": list(self.auth_methods),
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "email", "profile"],
            }

        @app.get("/jwks")
        def jwks() -> dict[str, Any]:
            return KeySet([self.key]).as_dict(private=False)

        @app.get("/authorize")
        def authorize(request: Request) -> Any:
            q = request.query_params
            redirect_uri = q.get("redirect_uri", "")
            if q.get("client_id") != self.client_id or redirect_uri not in self.redirect_uris:
                return JSONResponse({"error": "invalid_client"}, status_code=400)
            if q.get("response_type") != "code" or "openid" not in q.get("scope", "").split():
                return JSONResponse({"error": "invalid_request"}, status_code=400)
            state = q.get("state", "")
            if self.user is None:
                return RedirectResponse(f"{redirect_uri}?{urlencode({'error': 'access_denied', 'state': state})}")
            if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
                return JSONResponse({"error": "invalid_request", "error_description": "PKCE required"}, 400)
            code = secrets.token_urlsafe(16)
            self._codes[code] = _Grant(
                client_id=self.client_id,
                redirect_uri=redirect_uri,
                nonce=q.get("nonce"),
                code_challenge=q.get("code_challenge"),
                user=self.user,
            )
            return RedirectResponse(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}", status_code=302)

        @app.post("/token")
        def token(
            grant_type: str = Form(""),
            code: str = Form(""),
            redirect_uri: str = Form(""),
            code_verifier: str = Form(""),
            client_id: str = Form(""),
            client_secret: str = Form(""),
            authorization: str | None = Header(default=None),
        ) -> Any:
            self.token_requests.append({"basic": str(bool(authorization)), "client_id": client_id})
            if authorization and authorization.startswith("Basic "):
                client_id, _, client_secret = base64.b64decode(authorization[6:]).decode().partition(":")
            if client_id != self.client_id or client_secret != self.client_secret:
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            grant = self._codes.pop(code, None)  # single use
            if grant_type != "authorization_code" or grant is None or grant.redirect_uri != redirect_uri:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            challenge = base64.urlsafe_b64encode(hashlib.sha256(code_verifier.encode()).digest()).rstrip(b"=")
            if challenge.decode() != grant.code_challenge:
                return JSONResponse({"error": "invalid_grant", "error_description": "PKCE mismatch"}, 400)
            access = secrets.token_urlsafe(16)
            self._access_tokens[access] = grant.user
            return {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": self.id_token(grant.user, grant.nonce),
            }

        @app.get("/userinfo")
        def userinfo(authorization: str | None = Header(default=None)) -> Any:
            user = self._access_tokens.get((authorization or "").removeprefix("Bearer "))
            if user is None:
                return JSONResponse({"error": "invalid_token"}, status_code=401)
            return {"sub": user.sub, "email": user.email, "email_verified": user.email_verified}

        return app

    def id_token(self, user: OidcUser, nonce: str | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user.sub,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "auth_time": now,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if user.email_in_id_token:
            claims["email"] = user.email
            claims["email_verified"] = user.email_verified
        if user.amr is not None:
            claims["amr"] = user.amr
        sign_with = self.tamper.get("sign_with")
        claims.update({k: v for k, v in self.tamper.items() if k != "sign_with"})
        claims = {k: v for k, v in claims.items() if v is not None}
        if sign_with == "hs256":
            from joserfc.jwk import OctKey

            return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(self.client_secret))
        key = self.key
        if sign_with == "other_key":
            key = RSAKey.generate_key(2048, parameters={"kid": self.key.kid}, private=True)
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)


@contextmanager
def serve_provider(client_id: str, client_secret: str, redirect_uris: set[str]) -> Iterator[LocalProvider]:
    """Serve a LocalProvider on 127.0.0.1 (a thread of this process); its issuer is its base URL."""
    provider = LocalProvider(client_id=client_id, client_secret=client_secret, redirect_uris=set(redirect_uris))
    port = free_port()
    provider.issuer = f"http://127.0.0.1:{port}"
    config = uvicorn.Config(
        provider.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False
    )
    with served(config):
        yield provider
