"""Which sender a request comes from: bearer token, or HTTP basic with the sender's name and token.

Every configured token is compared, in constant time, on every request: the time taken says neither
whether a token matched nor which sender's did.
"""

from __future__ import annotations

import binascii
import hmac
from base64 import b64decode
from dataclasses import dataclass

from shared.config import Settings

DEFAULT_SENDER = "alertmanager"


@dataclass(frozen=True)
class SenderTokens:
    """Sender name → token, as bytes."""

    tokens: tuple[tuple[str, bytes], ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> SenderTokens:
        tokens: dict[str, bytes] = {}
        if settings.ingest_token is not None and settings.ingest_token.get_secret_value():
            tokens[DEFAULT_SENDER] = settings.ingest_token.get_secret_value().encode()
        for name, secret in settings.ingest_tokens.items():
            if secret.get_secret_value():
                tokens[name] = secret.get_secret_value().encode()
        return cls(tuple(tokens.items()))

    def __bool__(self) -> bool:
        return bool(self.tokens)

    def sender(self, authorization: str | None) -> str | None:
        """The sender's name, or None when the header is missing, malformed or matches no sender."""
        if not authorization:
            return None
        scheme, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer" and credentials:
            return self._match(None, _bytes(credentials))
        if scheme.lower() == "basic" and credentials:
            try:
                decoded = b64decode(credentials, validate=True)
            except (binascii.Error, ValueError):
                return None
            name, sep, password = decoded.partition(b":")
            if not sep:
                return None
            return self._match(name, password)
        return None

    def _match(self, name: bytes | None, token: bytes) -> str | None:
        matched: str | None = None
        for sender, expected in self.tokens:
            # `&` rather than `and`: both comparisons run whatever the first one says.
            ok = hmac.compare_digest(token, expected) & (name is None or hmac.compare_digest(name, sender.encode()))
            if ok and matched is None:
                matched = sender
        return matched


def _bytes(text: str) -> bytes:
    # aiohttp decodes header bytes it cannot read as UTF-8 into surrogates; those can never match a token.
    return text.encode("utf-8", errors="replace")
