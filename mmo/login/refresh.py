"""
Refresh tokens: what lets a returning player log in again without a
password hash.

A token is C{FAMILY "." SECRET}, both random (128 and 256 bits,
base64url).  The family names the device's row in the store; the store
keeps only the SHA-256 of the secret: a fast hash is right for a secret
with that much entropy (there is nothing to guess), where a password needs
argon2.  Each use spends the token and gives the next one of the family;
presenting a spent one revokes the family (L{mmo.store.RefreshReused}).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

#: Longest token accepted: a family and a secret with room to spare.
MAX_TOKEN_LENGTH = 128

#: Longest device label.
MAX_DEVICE_LENGTH = 64


@dataclass(frozen=True)
class RefreshToken:
    """
    @ivar family: The public half, naming the family in the store.
    @ivar secret: The private half, stored only as L{hashed}.
    """

    family: str
    secret: str

    @classmethod
    def new(cls, family: str | None = None) -> RefreshToken:
        """A fresh token: of a new family, or the next of C{family}."""
        return cls(family or secrets.token_urlsafe(16), secrets.token_urlsafe(32))

    @classmethod
    def parse(cls, text: object) -> RefreshToken | None:
        """The token in C{text}, or C{None} if it is not one."""
        if not isinstance(text, str) or len(text) > MAX_TOKEN_LENGTH or text.count(".") != 1:
            return None
        family, _, secret = text.partition(".")
        if not family or not secret:
            return None
        return cls(family, secret)

    @property
    def hashed(self) -> str:
        """The SHA-256 (hex) of the secret: what the store keeps."""
        return hashlib.sha256(self.secret.encode("utf-8")).hexdigest()

    def __str__(self) -> str:
        return f"{self.family}.{self.secret}"


def check_device(device: object) -> str | None:
    """C{device} if it is a usable label (1 to 64 printable characters), else C{None}."""
    if (
        not isinstance(device, str)
        or not 1 <= len(device) <= MAX_DEVICE_LENGTH
        or not device.isprintable()
    ):
        return None
    return device
