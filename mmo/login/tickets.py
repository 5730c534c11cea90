"""
Session tickets: what login gives a player to present to a gateway.

A ticket is signed (HMAC-SHA256 with the deployment's ticket key), expires,
is bound to one account and realm, and is used once: the gateway claims its
nonce on the bus, so a replayed ticket is refused on every gateway.  A
revocation (logout) refuses every ticket of the account issued before it.

Wire form: C{base64url(msgpack([version, account_id, name, realm, issued,
expires, nonce])) "." base64url(hmac)}.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
from dataclasses import dataclass

import msgpack

from mmo.config import ConfigError

TICKET_VERSION = 1


class TicketError(Exception):
    """A ticket is refused; C{reason} says why (for the log, and the player)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Ticket:
    account_id: str
    name: str
    realm: str
    issued: float
    expires: float
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def ticket_key_path(config) -> str:
    return config.login.ticket_key or os.path.join(config.deployment.tls_dir, "ticket.key")


def load_key(config) -> bytes:
    """The ticket key; a missing or short key file is a L{ConfigError}."""
    path = ticket_key_path(config)
    key = ("login", "ticket_key") if config.login.ticket_key else ("deployment", "tls_dir")
    try:
        with open(path, "rb") as f:
            secret = f.read().strip()
    except OSError as e:
        raise ConfigError(
            f"cannot read the ticket key {path}: {e.strerror or e}; generate it with: "
            f"mmo-certs --config {config.file} (add --renew to keep an existing CA)",
            key,
            config.file,
        )
    if len(secret) < 32:
        raise ConfigError(f"the ticket key {path} is shorter than 32 bytes", key, config.file)
    return secret


def new_key() -> bytes:
    """A fresh ticket key (hex text, 64 characters)."""
    return secrets.token_hex(32).encode("ascii")


class TicketSigner:
    """Issues and checks tickets with one key and clock."""

    def __init__(self, key: bytes, ttl: float, clock):
        self.key = key
        self.ttl = ttl
        self.clock = clock

    def _mac(self, payload: bytes) -> bytes:
        # The one-shot digest: no HMAC object for each ticket.
        return hmac.digest(self.key, payload, "sha256")

    def issue(self, account_id: str, name: str, realm: str) -> tuple[str, Ticket]:
        now = self.clock.seconds()
        ticket = Ticket(account_id, name, realm, now, now + self.ttl, secrets.token_hex(16))
        payload = msgpack.packb(
            [TICKET_VERSION, account_id, name, realm, ticket.issued, ticket.expires, ticket.nonce]
        )
        return f"{_b64(payload)}.{_b64(self._mac(payload))}", ticket

    def verify(self, token, allow_expired: bool = False) -> Ticket:
        """The ticket in C{token}; L{TicketError} if forged, malformed or expired."""
        if not isinstance(token, str) or token.count(".") != 1 or len(token) > 1024:
            raise TicketError("malformed ticket")
        body, _, mac = token.partition(".")
        try:
            payload, signature = _unb64(body), _unb64(mac)
        except (ValueError, TypeError):
            raise TicketError("malformed ticket")
        if not hmac.compare_digest(signature, self._mac(payload)):
            raise TicketError("forged ticket")
        try:
            version, account_id, name, realm, issued, expires, nonce = msgpack.unpackb(payload)
        except Exception:
            raise TicketError("malformed ticket")
        if version != TICKET_VERSION:
            raise TicketError("ticket of an unknown version")
        if not allow_expired and self.clock.seconds() >= expires:
            raise TicketError("expired ticket")
        return Ticket(account_id, name, realm, issued, expires, nonce)
