"""Who is asking and what they may do: users from a YAML file with argon2 hashes, API tokens, roles.

argon2id is the password hash OWASP recommends first; argon2-cffi is its reference binding. Verifying
costs tens of milliseconds by design, so callers run it in a thread.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from shared.config import Settings
from shared.secret_values import EXAMPLE_HASHES

_hasher = PasswordHasher()
# Checked when a user name is unknown, so a wrong name takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash("vigil-no-such-user")


class Role(StrEnum):
    responder = "responder"  # may read, acknowledge, resolve, reopen and comment
    viewer = "viewer"  # may read


class Via(StrEnum):
    token = "token"  # noqa: S105 (how the caller got in, not a secret)
    session = "session"
    proxy = "proxy"
    anonymous = "anonymous"


@dataclass(frozen=True)
class User:
    name: str
    password_hash: str
    role: Role


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    via: Via
    csrf_token: str | None = None

    @property
    def can_act(self) -> bool:
        return self.role is Role.responder


# Longer names are refused at login without further ado: failed logins are stored per name (lockout.py).
MAX_NAME = 256


class UsersFileError(ValueError):
    pass


def load_users(path: Path | None) -> dict[str, User]:
    """Users by name; a missing or malformed file stops the service at start with the reason."""
    if path is None:
        return {}
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsersFileError(f"VIGIL_WEB_USERS_FILE {path}: {exc}") from None
    entries = (doc or {}).get("users", []) if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise UsersFileError(f"VIGIL_WEB_USERS_FILE {path}: expected a `users:` list")
    users: dict[str, User] = {}
    for n, entry in enumerate(entries):
        where = f"VIGIL_WEB_USERS_FILE {path}: users[{n}]"
        if not isinstance(entry, dict):
            raise UsersFileError(f"{where}: expected a mapping with name, password_hash, role")
        name, hashed, role = entry.get("name"), entry.get("password_hash"), entry.get("role", "viewer")
        if not isinstance(name, str) or not name.strip():
            raise UsersFileError(f"{where}: `name` is required")
        if len(name) > MAX_NAME:
            raise UsersFileError(f"{where}: `name` is longer than {MAX_NAME} characters")
        if not isinstance(hashed, str) or not hashed.startswith("$argon2"):
            raise UsersFileError(
                f"{where}: `password_hash` must be an argon2 hash (python -m services.web.hash_password)"
            )
        if hashed in EXAMPLE_HASHES:
            raise UsersFileError(f"{where}: `password_hash` is the example's, whose password is published; make one")
        if role not in Role.__members__:
            raise UsersFileError(f"{where}: `role` must be responder or viewer")
        if name in users:
            raise UsersFileError(f"{where}: user {name!r} listed twice")
        users[name] = User(name, hashed, Role(role))
    return users


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(users: dict[str, User], name: str, password: str) -> User | None:
    """The user if the password is right; slow on purpose (run it in a thread)."""
    user = users.get(name)
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    return user


@dataclass(frozen=True)
class TokenBook:
    """API tokens: `VIGIL_API_TOKEN` is a responder, `VIGIL_WEB_READONLY_TOKENS` are viewers."""

    responder: tuple[str, ...]
    readonly: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenBook:
        responder = (settings.api_token.get_secret_value(),) if settings.api_token else ()
        return cls(responder, tuple(t.get_secret_value() for t in settings.web_readonly_tokens))

    def principal(self, token: str) -> Principal | None:
        # Every token is compared, in constant time, so timing says nothing about which one nearly matched.
        found: Principal | None = None
        for known in self.responder:
            if hmac.compare_digest(known.encode(), token.encode()):
                found = Principal("api-token", Role.responder, Via.token)
        for known in self.readonly:
            if hmac.compare_digest(known.encode(), token.encode()) and found is None:
                found = Principal("readonly-token", Role.viewer, Via.token)
        return found


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def same_secret(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


def safe_next(target: str | None) -> str:
    """Where to go after login: only a path on this site (an absolute or `//host` URL would be an open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
