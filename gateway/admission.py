"""Who gets in: the API key and page key for tokens, then origin, token and connection caps.

``POST /v1/sessions`` trades the API key (``Authorization: Bearer``) for a session
token; ``/v1/realtime?token=`` checks the browser's origin, the token and the
per-IP, per-key and per-user connection caps before the relay starts (the IP is the
peer's, or the one a trusted proxy forwarded: ``VOXMESH_GATEWAY_TRUSTED_PROXIES``).
Rejected WebSockets are accepted and closed at once with a 44xx code and a reason,
because a browser sees nothing of an HTTP error returned to its handshake. Tokens and
keys are never logged; a key is named by :func:`gateway.auth.key_id` only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Request, WebSocket
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection

from gateway import metrics
from gateway.auth import (
    PAGE_SUBJECT,
    Claims,
    TokenError,
    TokenIssuer,
    key_id,
    page_key,
    same_secret,
)
from gateway.limits import ConnectionLimiter, OriginPolicy, is_loopback_host, is_loopback_peer
from gateway.protocol import CloseCode
from voxmesh.config import GatewaySettings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096
MAX_USER_ID_CHARS = 128


@dataclass
class Rejection(Exception):
    """A request the gateway refuses: an HTTP status for REST, a close code for WebSockets."""

    status: int
    code: str
    message: str
    close_code: int = CloseCode.POLICY

    def response(self) -> JSONResponse:
        """The JSON error reply of a REST endpoint."""
        headers = {"WWW-Authenticate": 'Bearer realm="voxmesh"'} if self.status == 401 else None
        return JSONResponse({"error": {"code": self.code, "message": self.message}},
                            status_code=self.status, headers=headers)


class Gatekeeper:
    """Admission for one gateway process.

    Args:
        settings: Gateway settings (keys, origins, connection caps).
    """

    def __init__(self, settings: GatewaySettings) -> None:
        self.tokens = TokenIssuer.from_settings(settings)
        self.origins = OriginPolicy(settings.allowed_origins)
        self.per_ip = ConnectionLimiter(settings.max_connections_per_ip)
        self.per_key = ConnectionLimiter(settings.max_connections_per_key)
        self.per_user = ConnectionLimiter(settings.max_connections_per_user)
        self._api_key = settings.api_key.get_secret_value()
        self._key_id = key_id(self._api_key)
        self._page_key = page_key(self._api_key) if settings.page_key_enabled else ""

    # -- tokens ---------------------------------------------------------------------------

    def page_key_for(self, request: HTTPConnection) -> str:
        """The page key for this request (the page load, or ``POST /v1/sessions`` with it), or "".

        It goes only to requests that pass the origin check, are not cross-site
        (``Sec-Fetch-Site``), and either name an origin listed in ``allowed_origins`` as their
        ``Host`` or come from this machine: a loopback ``Host`` *and* a loopback peer (after
        trusted proxies are resolved). A DNS-rebinding page (evil.example resolving to
        127.0.0.1) asks with its own host name; a remote client that sends
        ``Host: localhost`` to a gateway on 0.0.0.0 is not a loopback peer.
        """
        if not self._page_key:
            return ""
        headers = request.headers
        if headers.get("sec-fetch-site", "").lower() == "cross-site":
            return ""
        host = headers.get("host", "")
        if not self.origins.allows(headers.get("origin"), host, request.url.scheme):
            return ""
        listed = any(self.origins.lists(f"{scheme}://{host}") for scheme in ("http", "https"))
        local = is_loopback_host(host) and is_loopback_peer(
            request.client.host if request.client else "")
        return self._page_key if listed or local else ""

    async def session_request_body(self, request: Request) -> dict[str, Any]:
        """The optional JSON body of ``POST /v1/sessions`` (``{"user_id": ...}``)."""
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise Rejection(413, "body_too_large", f"body over {MAX_BODY_BYTES} bytes")
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise Rejection(400, "invalid_body", "body: malformed JSON") from None
        if not isinstance(body, dict):
            raise Rejection(400, "invalid_body", "body: expected a JSON object")
        user_id = body.get("user_id", "")
        if not isinstance(user_id, str) or len(user_id) > MAX_USER_ID_CHARS:
            raise Rejection(400, "invalid_field",
                            f"user_id: expected a string of at most {MAX_USER_ID_CHARS} chars")
        return body

    def issue(self, request: Request, body: dict[str, Any]) -> tuple[str, int]:
        """Check the bearer key of ``POST /v1/sessions`` and issue a token.

        Returns:
            The token and its expiry in Unix seconds.

        Raises:
            Rejection: 401 for a missing or wrong key, 403 for a disallowed origin.
        """
        origin = request.headers.get("origin")
        host = request.headers.get("host", "")
        if not self.origins.allows(origin, host, request.url.scheme):
            self._rejected("forbidden_origin")
            raise Rejection(403, "forbidden_origin", f"origin {origin!r} is not allowed")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            self._rejected("missing_key")
            raise Rejection(401, "unauthorized", "missing Authorization: Bearer <API key>")
        given = given.strip()
        user_id = str(body.get("user_id", ""))
        # Both comparisons always run, so timing tells nothing about which key was close.
        is_api_key = same_secret(given, self._api_key)
        is_page_key = bool(self._page_key) and same_secret(given, self._page_key)
        if is_api_key:
            subject = self._key_id
        elif is_page_key and self.page_key_for(request):
            if user_id:
                raise Rejection(403, "forbidden", "user_id: only the API key can vouch for a user")
            subject = PAGE_SUBJECT
        else:
            self._rejected("bad_key")
            raise Rejection(401, "unauthorized", "invalid API key")
        return self.tokens.issue(subject, user_id)

    # -- WebSockets -----------------------------------------------------------------------

    def admit(self, ws: WebSocket) -> Claims:
        """Check a ``/v1/realtime`` handshake; returns the token's claims.

        Raises:
            Rejection: With the close code to refuse it with.
        """
        origin = ws.headers.get("origin")
        scheme = "https" if ws.url.scheme == "wss" else "http"
        if not self.origins.allows(origin, ws.headers.get("host", ""), scheme):
            raise Rejection(403, "forbidden_origin", f"origin {origin} is not allowed",
                            CloseCode.FORBIDDEN_ORIGIN)
        try:
            claims = self.tokens.verify(ws.query_params.get("token"))
        except TokenError as exc:
            raise Rejection(401, "unauthorized", str(exc), CloseCode.UNAUTHORIZED) from None
        ip = ws.client.host if ws.client else "unknown"
        if self.per_ip.full(ip):
            raise Rejection(429, "too_many_connections",
                            f"this IP already has {self.per_ip.limit} connections",
                            CloseCode.TOO_MANY_CONNECTIONS)
        if self.per_key.full(claims.subject):
            raise Rejection(429, "too_many_connections",
                            f"this key already has {self.per_key.limit} connections",
                            CloseCode.TOO_MANY_CONNECTIONS)
        user = _user(claims)
        if user and self.per_user.full(user):
            raise Rejection(429, "too_many_connections",
                            f"this user already has {self.per_user.limit} connections",
                            CloseCode.TOO_MANY_CONNECTIONS)
        return claims

    async def refuse(self, ws: WebSocket, rejection: Rejection) -> None:
        """Accept and close at once, so that a browser can read the code and the reason."""
        self._rejected(rejection.code)
        try:
            await ws.accept()
            await ws.close(rejection.close_code, rejection.message[:120])
        except (RuntimeError, OSError):
            pass  # the client left first

    @contextmanager
    def hold(self, ws: WebSocket, claims: Claims) -> Iterator[None]:
        """Count the connection against its IP's, key's and user's caps while the block runs."""
        with ExitStack() as stack:
            stack.enter_context(self.per_ip.hold(ws.client.host if ws.client else "unknown"))
            stack.enter_context(self.per_key.hold(claims.subject))
            user = _user(claims)
            if user:
                stack.enter_context(self.per_user.hold(user))
            yield

    def _rejected(self, reason: str) -> None:
        metrics.REJECTIONS.labels(reason).inc()
        log.info("rejected a request", extra={"reason": reason})


def _user(claims: Claims) -> str:
    """Whom the per-user cap counts: the token's user within its key; "" when the token names
    none (the per-IP cap then applies alone)."""
    return f"{claims.subject}/{claims.user_id}" if claims.user_id else ""
