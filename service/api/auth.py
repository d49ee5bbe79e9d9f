"""Optional API key.

When ``ASK_API_KEY`` is set, every route needs it except ``/health`` and the search page's static
files (``/`` and ``/static/…``: the same bytes for everyone, holding no document, setting or key);
``/metrics`` is open only with ``ASK_PROTECT_METRICS=false``. The API docs (``/docs``, ``/redoc``)
and the schema (``/openapi.json``) need the key too: the schema shows the service's limits and
version. The check is one ASGI gate in front of the whole app (``KeyGate``), so a route added later
is protected by default. A request sends the key as ``Authorization: Bearer KEY`` or
``X-API-Key: KEY``. Only the key's SHA-256 digest is kept in memory, and digests are compared with
``hmac.compare_digest`` (constant time).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
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


class KeyGate:
    """ASGI gate: every HTTP request needs the key, except on the public paths."""

    def __init__(self, app: ASGIApp, auth: ApiKeyAuth, public: frozenset[str], public_prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.auth = auth
        self.public = public
        self.public_prefixes = public_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.auth.enabled:
            path = scope.get("path", "")
            if path not in self.public and not path.startswith(self.public_prefixes):
                try:
                    self.auth.check(_scope_headers(scope))
                except ApiError as exc:
                    await error_response(exc.status, exc.code, exc.message, exc.headers)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def openapi_security(auth: ApiKeyAuth) -> Callable[..., Awaitable[None]]:
    """A dependency that shows the key's two schemes in OpenAPI (the docs' "Authorize" button).

    ``KeyGate`` has already refused requests without the key; checking again here costs a digest.
    """
    async def require_key(
        request: Request,
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
        _header: Annotated[str | None, Security(header_scheme)],
    ) -> None:
        auth.check(request.headers)

    return require_key
