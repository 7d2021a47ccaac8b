"""Who is calling: an app JWT, an installation token, the configured token, or nobody.

JWTs are checked the way GitHub checks them: RS256 against the app's public key, ``iss``
the app id or client id, ``exp`` in the future and at most ten minutes after ``iat``,
``iat`` not more than a minute ahead of the server's clock.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass, field
from typing import Any

import jwt

from runnerctl.sandbox.state import ApiError, World

#: How far ahead of our clock a JWT's ``iat`` may be (GitHub tolerates small skew).
IAT_SKEW = 60
MAX_JWT_LIFETIME = 600


@dataclass(frozen=True)
class Credential:
    """The caller; ``kind`` is none, app-jwt, installation or token."""

    kind: str
    installation_id: int = 0
    permissions: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How the call log names this credential."""
        if self.kind == "installation":
            return f"installation:{self.installation_id}"
        return self.kind

    def can(self, permission: str, level: str) -> bool:
        """Whether an installation token holds ``permission`` at ``level`` (write > read)."""
        held = self.permissions.get(permission)
        return held == "write" or (held == "read" and level == "read")


NOBODY = Credential("none")


def identify(world: World, public_key: Any, authorization: str | None) -> Credential:
    """The credential in an ``Authorization`` header; 401 when it is not accepted."""
    if not authorization:
        return NOBODY
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    scheme = scheme.lower()
    if scheme == "basic":
        return _basic(world, value)
    if scheme not in ("bearer", "token") or not value:
        raise ApiError(401, "Bad credentials")
    if value.count(".") == 2:
        if scheme != "bearer":
            raise ApiError(401, "A JSON web token must be sent as 'Authorization: Bearer <jwt>'")
        verify_jwt(world, public_key, value)
        return Credential("app-jwt")
    if value == world.pat:
        return Credential("token")
    with world.lock:
        token = world.valid_token(value, "installation")
    if token is None:
        raise ApiError(401, "Bad credentials")
    return Credential("installation", token.installation_id, dict(token.permissions))


def _basic(world: World, value: str) -> Credential:
    """``config.sh --pat`` sends the token as the password of HTTP Basic auth."""
    try:
        _, _, password = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(401, "Bad credentials") from None
    if password != world.pat:
        raise ApiError(401, "Bad credentials")
    return Credential("token")


def verify_jwt(world: World, public_key: Any, token: str) -> dict[str, Any]:
    """The claims of a valid app JWT; 401 with a message naming the broken rule."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            public_key,
            algorithms=["RS256"],
            options={
                "require": ["exp", "iat", "iss"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_iss": False,
            },
        )
    except jwt.PyJWTError:
        raise ApiError(401, "A JSON web token could not be decoded") from None
    now = time.time()
    exp, iat = claims["exp"], claims["iat"]
    if not isinstance(exp, (int, float)) or not isinstance(iat, (int, float)):
        raise ApiError(401, "'exp' and 'iat' claims must be numbers (seconds since the epoch)")
    if exp <= now:
        raise ApiError(401, "'Expiration time' claim ('exp') lies in the past: the JWT expired")
    if exp - iat > MAX_JWT_LIFETIME:
        raise ApiError(401, "'Expiration time' claim ('exp') is more than 10 minutes after 'iat'")
    if iat > now + IAT_SKEW:
        raise ApiError(401, "'Issued at' claim ('iat') lies in the future")
    if str(claims["iss"]) not in (str(world.app_id), world.client_id):
        raise ApiError(401, "'Issuer' claim ('iss') is neither this app's id nor its client id")
    return claims
