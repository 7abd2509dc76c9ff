"""Which secrets Vigil refuses to run with: empty, short, or a value its own files show as an example.

A token or password copied from `.env.example`, the docs or `deploy/users.example.yml` is known to everyone who
read them; a short one falls to guessing. Every service checks its settings at start (shared/config.py) and the web
its users file, and refuses to start naming the variable, rather than run with a door anyone can open.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

MIN_LENGTH = 16
# Values the repository shows as examples, or that people type when told to fill something in. Compared in
# lower case, so `Change-Me` is refused too.
EXAMPLES = frozenset(
    {
        "change-me",
        "changeme",
        "change_me",
        "replace-me",
        "password",
        "secret",
        "token",
        "guest",
        "vigil",
        "admin",
        "test",
        "example",
        "replace-with-the-fail2ban-token",
        "a-long-example-password",
        "harness-token",
        "test-token",
    }
)
# The password hash deploy/users.example.yml once shipped (its password was printed beside it).
EXAMPLE_HASHES = frozenset(
    {
        "$argon2id$v=19$m=65536,t=3,p=4$Xyzgh6aLbFpokeIRfFfCQA$VF4pSTqW3iTXYkaUJHG0vBi0uEklfMj+ZSsrGW4uSNk",
    }
)


def weakness(value: str) -> str | None:
    """Why `value` may not be a token or password, or None when it may."""
    if not value.strip():
        return "is empty"
    if value.strip().lower() in EXAMPLES:
        return "is an example value from Vigil's own files; generate one, e.g. `openssl rand -hex 24`"
    if len(value) < MIN_LENGTH:
        return f"is shorter than {MIN_LENGTH} characters; generate one, e.g. `openssl rand -hex 24`"
    return None


def url_password_weakness(url: str) -> str | None:
    """Why the password in a connection URL may not be used; None when it may, or when the URL carries none (the
    server then authenticates otherwise: peer, certificate, a password file)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None  # not a URL; the driver will say what is wrong with it
    if parts.password is None:
        return None
    problem = weakness(unquote(parts.password))
    return f"its password {problem}" if problem else None
