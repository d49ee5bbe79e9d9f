"""Optional API key.

When ``ASK_API_KEY`` is set, every endpoint but ``/health`` (and the static search page, which holds
no data) needs it, ``/metrics`` too unless ``ASK_PROTECT_METRICS=false``, and so does ``/mcp``.
A request sends it as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``. Only the key's SHA-256
digest is kept in memory, and digests are compared with ``hmac.compare_digest`` (constant time).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import ApiError, error_response

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="ask"'}

# Declared for the OpenAPI docs (the "Authorize" button); auto_error=False: we answer 401 ourselves.
bearer_scheme = HTTPBearer(auto_error=False, description="`Authorization: Bearer KEY`")
header_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: KEY`")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeyAuth:
    def __init__(self, key: SecretStr | str | None) -> None:
        raw = key.get_secret_value() if isinstance(key, SecretStr) else key
        self._digest = _digest(raw) if raw else None

    @property
    def enabled(self) -> bool:
        return self._digest is not None

    def accepts(self, presented: str | None) -> bool:
        if self._digest is None:
            return True
        if not presented:
            return False
        return hmac.compare_digest(_digest(presented), self._digest)

    @staticmethod
    def presented(headers: Mapping[str, str]) -> str | None:
        """The key a request carries: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
        auth = headers.get("authorization")
        if auth:
            scheme, _, value = auth.strip().partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return value.strip()
        return headers.get("x-api-key") or None

    def check(self, headers: Mapping[str, str]) -> None:
        if not self.accepts(self.presented(headers)):
            missing = self.presented(headers) is None
            raise ApiError(
                401, "unauthorized",
                "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'" if missing
                else "the API key is not valid",
                CHALLENGE,
            )


def _scope_headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        out.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return out


class RequireKey:
    """ASGI wrapper applying the key to a sub-application (the MCP endpoint)."""

    def __init__(self, app: ASGIApp, auth: ApiKeyAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.auth.enabled:
            try:
                self.auth.check(_scope_headers(scope))
            except ApiError as exc:
                await error_response(exc.status, exc.code, exc.message, exc.headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def dependency(auth: ApiKeyAuth):  # noqa: ANN201 - a FastAPI dependency
    """A FastAPI dependency that enforces the key (documented in OpenAPI as two security schemes)."""
    async def require_key(
        request: Request,
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
        _header: Annotated[str | None, Security(header_scheme)],
    ) -> None:
        auth.check(request.headers)

    return require_key
