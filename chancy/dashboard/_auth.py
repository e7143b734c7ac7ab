"""The dashboard's security: password hashes, signed session cookies, CSRF tokens, tokens.

* A **token** (`create_app(token=...)`, `--token`, `$CHANCY_DASHBOARD_TOKEN`) is what API
  clients send as `Authorization: Bearer <token>`, and what a person may type on the login
  page. Compared in constant time.
* **Users** (`create_app(users={"alice": hash_password("...")})`, `--users-file`) log in with a
  name and a password; only the scrypt hash is kept (`chancy dashboard hash-password`).
* A browser that logged in holds a **session cookie**: a JSON payload (the user, a CSRF token,
  its expiry) signed with HMAC-SHA256 by the app's secret, HttpOnly, SameSite=Lax, Secure over
  HTTPS, scoped to the dashboard's path. Nothing is stored server-side; the secret is random
  per process unless given (`secret_key=`, `$CHANCY_DASHBOARD_SECRET`), so sessions end on a
  restart and replicas behind one address need the same secret.
* Every **mutation** made with the cookie needs the session's CSRF token in the
  `X-CSRF-Token` header (the pages send it; a cross-site form cannot set a header). A request
  with a Bearer token needs none: no browser sends that header by itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from typing import Any

#: scrypt parameters of new hashes (n = 2**14, r = 8, p = 1: about 16 MiB and 50 ms).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1

#: How long a login lasts (seconds).
SESSION_MAX_AGE = 12 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """A salted scrypt hash of `password`, as `scrypt$n$r$p$salt$hash` (store this, never the
    password; check it with `verify_password`)."""
    if not isinstance(password, str) or not password:
        raise ValueError("password: expected a non-empty string")
    salt = os.urandom(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_hash(stored: str) -> str:
    """`stored` if it is a hash made by `hash_password`, else `ValueError` (a password given
    in the clear, say)."""
    parts = stored.split("$") if isinstance(stored, str) else []
    ok = len(parts) == 6 and parts[0] == "scrypt" and all(p.isdigit() for p in parts[1:4])
    if ok:
        try:
            _unb64(parts[4])
            _unb64(parts[5])
        except ValueError:
            ok = False
    if not ok:
        raise ValueError(
            "expected a password hash made by `chancy dashboard hash-password` "
            "(scrypt$...), not a password"
        )
    return stored


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches the hash `stored` (constant time)."""
    try:
        _, n, r, p, salt, digest = check_hash(stored).split("$")
        expected = _unb64(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=256 * 2**20,
        )
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


def tokens_equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class Sessions:
    """Signs and reads session cookies (see the module doc)."""

    cookie = "chancy_dashboard"

    def __init__(self, secret: bytes, max_age: int = SESSION_MAX_AGE) -> None:
        self._key = hashlib.sha256(b"chancy-dashboard-session:" + secret).digest()
        self.max_age = max_age

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def new(self, user: str | None) -> dict[str, Any]:
        """A fresh session of `user` (None: not logged in, a CSRF token only)."""
        return {
            "user": user,
            "csrf": secrets.token_urlsafe(24),
            "exp": int(time.time()) + self.max_age,
        }

    def dump(self, session: dict[str, Any]) -> str:
        body = _b64(json.dumps(session, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}"

    def load(self, value: str | None) -> dict[str, Any] | None:
        """The session of a cookie value, or None when it is missing, forged or expired."""
        if not value or value.count(".") != 1:
            return None
        body, signature = value.split(".")
        if not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            return None
        try:
            session = json.loads(_unb64(body))
        except ValueError:
            return None
        if (
            not isinstance(session, dict)
            or not isinstance(session.get("exp"), int)
            or not isinstance(session.get("csrf"), str)
            or session["exp"] < time.time()
        ):
            return None
        user = session.get("user")
        if user is not None and not isinstance(user, str):
            return None
        return session


class Throttle:
    """Failed logins per client address: after `limit` failures within `window` seconds, that
    address is refused until the window has passed (a brake on guessing passwords)."""

    def __init__(self, limit: int = 10, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, list[float]] = {}

    def _recent(self, client: str) -> list[float]:
        now = time.monotonic()
        recent = [t for t in self._failures.get(client, []) if now - t < self.window]
        if recent:
            self._failures[client] = recent
        else:
            self._failures.pop(client, None)
        return recent

    def blocked(self, client: str) -> bool:
        return len(self._recent(client)) >= self.limit

    def failed(self, client: str) -> None:
        self._recent(client)
        if len(self._failures) > 10_000:  # bounded memory, whatever the traffic
            self._failures.clear()
        self._failures.setdefault(client, []).append(time.monotonic())

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
