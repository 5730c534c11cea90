"""
Login throttles, counted on the bus so that every login process of a
deployment sees the same counts.

Three counts, each over a sliding-from-first-failure window:

  - failures from one address (any account): past C{ip_failures} the
    address gets "throttled" for every account;
  - failures on one account from one address: past C{account_ip_failures}
    that address is locked out of that account;
  - failures on one account from every address: past C{account_failures}
    the account is under attack, and only addresses that have not failed on
    it may still try.

The last rule is why an attacker cannot lock a player out cheaply: the
player, from an address that never failed, still gets in.  A locked account
answers exactly like a wrong password, so a lock tells an attacker nothing.
"""

from __future__ import annotations

import hashlib

from twisted.internet import defer

from mmo.wire.codes import THROTTLED, WireError


class Locked(Exception):
    """This address may not try this account now (answered as a failed login)."""


def _key(*parts: str) -> str:
    # Hash the parts: account names and addresses never appear in bus keys.
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]
    return f"login:{parts[0]}:{digest}"


async def alongside(first, second):
    """
    The results of the awaitables C{first} and C{second}, both started at
    once (on Redis, their requests go out together: one round trip), and
    C{first}'s failure first: C{second}'s is then not waited for, and not
    reported.
    """
    later = defer.ensureDeferred(second)
    try:
        result = await first
    except BaseException:
        later.addErrback(lambda _: None)
        raise
    return result, await later


class Throttle:
    def __init__(self, bus, login_config):
        self.bus = bus
        self.config = login_config

    async def check_login(self, name_key: str, address: str) -> int:
        """
        The failures of the address on this account (which L{succeeded}
        clears); fails with a C{throttled} L{WireError} when the address is
        throttled, or L{Locked} when it may not try this account now.
        """
        c = self.config
        _, pair = await alongside(
            self.check_address(address), self.bus.count(_key("pair", name_key, address))
        )
        if pair >= c.account_ip_failures:
            raise Locked()
        if pair > 0 and await self.bus.count(_key("account", name_key)) >= c.account_failures:
            raise Locked()
        return pair

    async def check_address(self, address: str) -> None:
        """
        Fails with a C{throttled} L{WireError} when the address is
        throttled: what a refresh token login, which names no account,
        checks.
        """
        if await self.bus.count(_key("ip", address)) >= self.config.ip_failures:
            raise WireError(THROTTLED, "too many failed logins from your address; wait a while")

    def failed_address(self, address: str) -> defer.Deferred:
        """A refused refresh token counts against its address."""
        return self.bus.hit(_key("ip", address), self.config.ip_window)

    async def failed(self, name_key: str, address: str) -> None:
        c = self.config
        await self.failed_address(address)
        await self.bus.hit(_key("pair", name_key, address), c.account_window)
        await self.bus.hit(_key("account", name_key), c.account_window)

    def succeeded(self, name_key: str, address: str) -> defer.Deferred:
        """A good login clears this address's failures on this account."""
        return self.bus.clear(_key("pair", name_key, address))

    async def check_register(self, address: str) -> None:
        c = self.config
        if await self.bus.hit(_key("register", address), c.register_window) > c.register_per_ip:
            raise WireError(THROTTLED, "too many registrations from your address; wait a while")
