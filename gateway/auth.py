"""Session tokens: the API key buys a short-lived signed token that opens ``/v1/realtime``.

Tokens are JWTs (HS256, PyJWT) so any gateway instance holding the same secret can
verify them without shared state. The secret is ``VOXMESH_GATEWAY_TOKEN_SECRET`` or,
when that is empty, derived from the API key; either way it goes through HMAC-SHA256
first, so the signing key is always 32 bytes and never the API key itself.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass

import jwt

from voxmesh.config import GatewaySettings

ALGORITHM = "HS256"
PAGE_SUBJECT = "page"
"""The ``sub`` of tokens bought with the page key rather than the API key."""
AUDIENCE = "voxmesh:realtime"
"""The ``aud`` of session tokens: good for ``/v1/realtime`` and nothing else."""


def _derive(secret: str, label: bytes) -> bytes:
    return hmac.new(secret.encode(), label, hashlib.sha256).digest()


def key_id(api_key: str) -> str:
    """A short, non-reversible name of an API key, safe for logs and token subjects."""
    return "key-" + hashlib.sha256(api_key.encode()).hexdigest()[:12]


def page_key(api_key: str) -> str:
    """The page key: good only for ``POST /v1/sessions``, derived so every instance agrees."""
    return _derive(api_key, b"voxmesh page key v1").hex()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets (no early exit on the first differing byte)."""
    return hmac.compare_digest(given.encode(), expected.encode())


class TokenError(Exception):
    """A token that does not open a session; the message says why (never echoes the token)."""


@dataclass(frozen=True)
class Claims:
    """What a valid token says.

    Attributes:
        subject: Who bought it: a :func:`key_id` or :data:`PAGE_SUBJECT`.
        user_id: The user the buyer vouched for; empty means an anonymous session.
        expires_at: Unix seconds.
        token_id: The token's ``jti``: the orchestrator lets each open one session.
    """

    subject: str
    user_id: str
    expires_at: int
    token_id: str = ""


class TokenIssuer:
    """Issues and verifies session tokens.

    Args:
        secret: ``VOXMESH_GATEWAY_TOKEN_SECRET``, or the API key when that is empty; every
            gateway instance that must accept the tokens needs the same one.
        ttl_s: Lifetime of a token.
    """

    def __init__(self, secret: str, ttl_s: float) -> None:
        self._key = _derive(secret, b"voxmesh session token v1")
        self.ttl_s = ttl_s

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> TokenIssuer:
        """The issuer the settings describe (token secret, else the API key; TTL)."""
        secret = settings.token_secret.get_secret_value() or settings.api_key.get_secret_value()
        return cls(secret, settings.token_ttl_s)

    def issue(self, subject: str, user_id: str = "", now: float | None = None) -> tuple[str, int]:
        """A new token and its expiry (Unix seconds).

        Args:
            subject: Who buys it (see :class:`Claims`).
            user_id: A user the buyer vouches for; the session must then be that user's.
            now: Issue time in Unix seconds; the current time when omitted.
        """
        issued = int(now if now is not None else time.time())
        expires = issued + max(1, round(self.ttl_s))
        claims: dict[str, object] = {"sub": subject, "aud": AUDIENCE, "iat": issued,
                                     "exp": expires, "jti": secrets.token_hex(16)}
        if user_id:
            claims["uid"] = user_id
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), expires

    def verify(self, token: str | None) -> Claims:
        """The claims of a valid token.

        Raises:
            TokenError: The token is missing, malformed, badly signed or expired.
        """
        if not token:
            raise TokenError("missing token: POST /v1/sessions with the API key, then "
                             "connect with ?token=")
        try:
            claims = jwt.decode(token, self._key, algorithms=[ALGORITHM], audience=AUDIENCE,
                                options={"require": ["exp", "sub", "aud", "jti"]})
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired: get a new one from POST /v1/sessions") from None
        except jwt.InvalidSignatureError:
            raise TokenError("token signature is invalid") from None
        except jwt.InvalidAudienceError:
            raise TokenError(f"token is not for this endpoint (audience must be "
                             f"{AUDIENCE!r})") from None
        except jwt.InvalidTokenError as exc:
            raise TokenError(f"token is invalid ({type(exc).__name__})") from None
        return Claims(subject=str(claims["sub"]), user_id=str(claims.get("uid", "")),
                      expires_at=int(claims["exp"]), token_id=str(claims["jti"]))


_TOKEN_IN_URL = re.compile(r"([?&]token=)[^&\s\"']+")


class RedactTokens(logging.Filter):
    """Replaces ``token=...`` in log messages (uvicorn logs each WebSocket's request line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never drops it."""
        message = record.getMessage()
        if "token=" in message:
            record.msg = _TOKEN_IN_URL.sub(r"\1[redacted]", message)
            record.args = None
        return True
