"""Who is asking and what they may do: users from a YAML file with argon2 hashes, API tokens, roles, the
client's address, and where a login may send the browser.

argon2id is the password hash OWASP recommends first; argon2-cffi is its reference binding. Verifying
costs tens of milliseconds and 64 MiB by design, so `PasswordChecks` runs a bounded number at once, in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import unquote

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
    """The user if the password is right; slow on purpose (run it through `PasswordChecks`)."""
    user = users.get(name)
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    return user


class PasswordChecksBusy(Exception):
    """Every password-check slot stayed taken for the whole wait."""


Verify = Callable[[dict[str, User], str, str], Awaitable[User | None]]


class PasswordChecks:
    """At most `concurrency` argon2 checks at once, each in a worker thread, so a burst of logins can neither
    take 64 MiB per request nor stall the event loop (and the ingest beside it on the same host)."""

    def __init__(self, concurrency: int, wait_s: float) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self.wait_s = wait_s

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[Verify]:
        """Hold a slot for one login (raises `PasswordChecksBusy` after `wait_s`); yields the check to run in it.

        A slot is taken before the login is counted (lockout.begin), so a login turned away busy is no failure."""
        try:
            async with asyncio.timeout(self.wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise PasswordChecksBusy from None
        handed_over = False

        async def verify(users: dict[str, User], name: str, password: str) -> User | None:
            nonlocal handed_over
            handed_over = True
            check = asyncio.ensure_future(asyncio.to_thread(check_password, users, name, password))
            # Freed when the thread ends, not when the request does: a cancelled request's thread still holds
            # its 64 MiB until argon2 returns.
            check.add_done_callback(lambda _: self._slots.release())
            return await asyncio.shield(check)

        try:
            yield verify
        finally:
            if not handed_over:
                self._slots.release()


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


# A `next` as the web itself writes it (gate.unauthenticated): printable ASCII, starting with one slash.
_PLAIN_NEXT = re.compile(r"/(?!/)[\x21-\x5b\x5d-\x7e]*")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0 and C1 controls, DEL
_DECODE_ROUNDS = 3


def _plain_path(path: str) -> bool:
    return (
        path.startswith("/")
        and not path.startswith("//")
        and "\\" not in path
        and not _CONTROL_CHARS.search(path)
        and not any(segment in (".", "..") for segment in path.split("/"))
    )


def safe_next(target: str | None) -> str:
    """Where to go after login: a path on this site, else `/` (anything else would be an open redirect).

    Browsers read a URL more loosely than a check does: they drop tabs and newlines (`/\t/evil` becomes
    `//evil`, another host), take `\\` for `/`, and proxies may decode `%2F` or `%5C` before routing. So only
    printable ASCII without spaces or backslashes passes, starting with exactly one `/`, and its path must still
    be a plain one after percent-decoding (up to three times; a path still encoded after that is refused too)."""
    if not target or not _PLAIN_NEXT.fullmatch(target):
        return "/"
    path = re.split(r"[?#]", target, maxsplit=1)[0]
    for _ in range(_DECODE_ROUNDS):
        decoded = unquote(path)
        if not _plain_path(decoded):
            return "/"
        if decoded == path:
            return target
        path = decoded
    return "/"


# C0 and C1 controls and DEL, and the lone surrogates aiohttp decodes bytes that are not UTF-8 into.
_MALFORMED_HEADER_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def malformed_header(value: str) -> bool:
    """A header value no credential or token can be made of: bytes that are not UTF-8, or control characters."""
    return _MALFORMED_HEADER_CHARS.search(value) is not None


def has_control_chars(text: str) -> bool:
    """Control characters (PostgreSQL refuses NUL in text; none belongs in a user name)."""
    return _CONTROL_CHARS.search(text) is not None


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """`VIGIL_WEB_TRUSTED_PROXIES` as networks (shared/config.py has already checked each one parses)."""
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def parse_address(text: str) -> IPAddress | None:
    """An address as a peer or an X-Forwarded-For entry gives it (`[v6]:port` and `v4:port` too); None: not one.

    An IPv4 address mapped into IPv6 (a dual-stack socket's view) is the IPv4 address it carries."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: IPAddress | None, trusted: Sequence[IPNetwork]) -> bool:
    return address is not None and any(address in network for network in trusted)


def client_address(peer: str, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]) -> IPAddress:
    """Whom a request comes from: the TCP peer, unless the peer is a trusted proxy.

    Each proxy appends to X-Forwarded-For the address it got the request from; a client can put anything before
    that. So the entries are read from the right, through trusted proxies only, and the first one that is not a
    trusted proxy is the client. An entry that is not an address stops the walk at the proxy that passed it on:
    that proxy is the client as far as anyone can tell, and a garbage value buys no address of one's choosing."""
    nearest = parse_address(peer)
    if nearest is None:
        raise ValueError(f"the peer {peer!r} is not an IP address")
    if not is_trusted(nearest, trusted):
        return nearest
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            return nearest
        nearest = address
        if not is_trusted(address, trusted):
            return address
    return nearest
