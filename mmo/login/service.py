"""
The login domain: registration, password checks, tickets and realms.  It
knows no bytes: the protocol parses, this decides.
"""

from __future__ import annotations

import re

from twisted.logger import Logger

from mmo.bus.directory import ranked
from mmo.game import messages
from mmo.game.messages import AccountSession, revoked_key
from mmo.login.refresh import RefreshToken
from mmo.login.throttle import Locked, Throttle, alongside
from mmo.login.tickets import TicketError, TicketSigner
from mmo.store import AlreadyExists, RefreshReused
from mmo.wire.codes import (
    BAD_NAME,
    BANNED,
    LOGIN_FAILED,
    NAME_TAKEN,
    NO_GATEWAY,
    REFRESH_REFUSED,
    TICKET_REFUSED,
    UNKNOWN_REALM,
    WEAK_PASSWORD,
    WireError,
)

#: The one answer to a wrong password, an unknown name and a locked account.
FAILED_MESSAGE = "wrong name or password"

NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")

#: Directory kinds that admit players.
GATEWAY_KINDS = ("gateway", "mmo")

#: Gateways a login reply lists at most: enough to resume on, a bounded reply.
MAX_GATEWAYS = 16


class LoginService:
    """
    @ivar store: An L{mmo.store.IStore}.
    @ivar bus: An L{mmo.bus.IBus}.
    @ivar hasher: A L{mmo.login.passwords.PasswordHasher}.
    @ivar signer: A L{TicketSigner}.
    """

    log = Logger()

    def __init__(self, config, store, bus, hasher, signer: TicketSigner, reactor):
        self.config = config
        self.rules = config.login
        self.store = store
        self.bus = bus
        self.hasher = hasher
        self.signer = signer
        self.reactor = reactor
        self.throttle = Throttle(bus, config.login)

    # -- rules ---------------------------------------------------------------

    def check_name(self, name) -> str:
        rules = self.rules
        if not isinstance(name, str) or not (
            rules.name_min_length <= len(name) <= rules.name_max_length
        ):
            raise WireError(
                BAD_NAME,
                f"a name has {rules.name_min_length} to {rules.name_max_length} characters",
            )
        if not NAME_PATTERN.match(name):
            raise WireError(
                BAD_NAME, "a name starts with a letter and has only letters, digits, '_' and '-'"
            )
        return name

    def check_password(self, name: str, password) -> str:
        rules = self.rules
        if not isinstance(password, str) or not (
            rules.password_min_length <= len(password) <= rules.password_max_length
        ):
            raise WireError(
                WEAK_PASSWORD,
                f"a password has {rules.password_min_length} to "
                f"{rules.password_max_length} characters",
            )
        if name.casefold() in password.casefold():
            raise WireError(WEAK_PASSWORD, "a password must not contain the name")
        if len(set(password)) < 3:
            raise WireError(WEAK_PASSWORD, "a password needs more than two different characters")
        return password

    # -- registration and login ---------------------------------------------

    async def register(self, name, password, address: str):
        """A new account; fails with a L{WireError} saying why not."""
        name = self.check_name(name)
        password = self.check_password(name, password)
        await self.throttle.check_register(address)
        encoded = await self.hasher.hash(password)
        try:
            account = await self.store.create_account(name, encoded)
        except AlreadyExists:
            raise WireError(NAME_TAKEN, f"the name {name!r} is taken")
        self.log.info("registered {name} from {address}", name=account.name, address=address)
        return account

    async def authenticate(self, name, password, address: str):
        """
        The account whose name and password these are.  A wrong password, an
        unknown name and a locked account fail alike (C{login_failed}) and
        cost alike (exactly one password check each).
        """
        if not isinstance(name, str) or not isinstance(password, str):
            raise WireError(LOGIN_FAILED, FAILED_MESSAGE)
        name_key = name.casefold()
        failures = 0
        try:
            failures = await self.throttle.check_login(name_key, address)
            locked = False
        except Locked:
            locked = True
        account = None
        if len(name) <= self.rules.name_max_length:
            account = await self.store.account_by_name(name)
        usable = account if account is not None and not locked else None
        password = password[: self.rules.password_max_length]
        ok = await self.hasher.verify(usable.password_hash if usable else None, password)
        if not ok:
            await self.throttle.failed(name_key, address)
            self.log.info("failed login for {name} from {address}", name=name, address=address)
            raise WireError(LOGIN_FAILED, FAILED_MESSAGE)
        if failures:
            # Nothing to clear otherwise: on Redis, a round trip saved.
            await self.throttle.succeeded(name_key, address)
        if account.banned:
            raise WireError(BANNED, "this account is banned")
        if self.hasher.needs_rehash(account.password_hash):
            encoded = await self.hasher.hash(password)
            await self.store.update_account(account.id, password_hash=encoded)
        return account

    def realm(self, realm) -> str:
        """The realm C{realm} names (the first realm for C{None}); L{WireError} if none."""
        realms = self.config.realm_names()
        if realm is None:
            return realms[0]
        if realm not in realms:
            raise WireError(UNKNOWN_REALM, f"no realm {realm!r}; realms: {', '.join(realms)}")
        return realm

    async def login(self, name, password, address: str, realm=None, device=None) -> dict:
        """
        Check the password and return a ticket and the least-loaded gateway
        of the realm (the first realm when none is named); with C{device}
        (a checked label), also a refresh token for that device.
        """
        realm = self.realm(realm)
        # The gateways are read with the throttles' counts rather than after
        # the hash: on Redis, one round trip for them all.  A realm with no
        # gateway is still told only after the password is checked.
        account, gateways = await alongside(
            self.authenticate(name, password, address), self.gateways(realm)
        )
        reply = self.admit(account, realm, address, gateways)
        if device is not None:
            token = RefreshToken.new()
            family = await self.store.issue_refresh(
                account.id,
                device,
                token.family,
                token.hashed,
                self.rules.refresh_ttl,
                self.rules.refresh_devices,
            )
            reply.update(refresh=str(token), refresh_expires=family.expires)
        return reply

    async def login_refresh(self, refresh, device: str, address: str, realm=None) -> dict:
        """
        Log in with the refresh token C{refresh} of C{device}: a ticket as
        L{login} gives, and the next token of the device (the one given is
        spent).  An unknown, spent, expired or revoked token, or one of
        another device, fails with C{refresh_refused} and counts against
        the address as a failed login does; a spent one also revokes the
        device's tokens.
        """
        realm = self.realm(realm)
        # The gateways before the token is spent: a reply that cannot be
        # given must not cost the player the token.  Read with the address's
        # count: on Redis, one round trip for both.
        _, gateways = await alongside(self.throttle.check_address(address), self.gateways(realm))
        token = RefreshToken.parse(refresh)
        rotated = None
        if token is not None:
            following = RefreshToken.new(token.family)
            try:
                rotated = await self.store.rotate_refresh(
                    token.family, device, token.hashed, following.hashed, self.rules.refresh_ttl
                )
            except RefreshReused as e:
                self.log.warn(
                    "a spent refresh token of account {account} on device {device!r} came "
                    "from {address}: the device's tokens are revoked",
                    account=e.account_id,
                    device=e.device,
                    address=address,
                )
        if rotated is None:
            await self.throttle.failed_address(address)
            raise WireError(REFRESH_REFUSED, "this refresh token is not valid; log in again")
        family, account = rotated
        if account is None or account.banned:
            await self.store.revoke_refresh(family.account_id)
            raise WireError(BANNED, "this account is banned")
        reply = self.admit(account, realm, address, gateways)
        reply.update(refresh=str(following), refresh_expires=family.expires)
        return reply

    def admit(self, account, realm: str, address: str, gateways: list[dict]) -> dict:
        """The reply to a login of C{account}: its ticket and gateways."""
        token, ticket = self.signer.issue(account.id, account.name, realm)
        self.log.info("{name} logged in from {address}", name=account.name, address=address)
        return {
            "account": account.id,
            "name": account.name,
            "realm": realm,
            "ticket": token,
            "expires": ticket.expires,
            "gateway": gateways[0],
            "gateways": gateways,
        }

    async def gateways(self, realm: str) -> list[dict]:
        """
        The live gateways of C{realm} that take players, least loaded first
        (the one to connect to, then those to resume on if it fails): each
        its name, host, port and WebSocket port (C{None} if it serves no
        browsers).  At most C{MAX_GATEWAYS}.
        """
        services = await self.bus.services()
        found = ranked(services, GATEWAY_KINDS, realm)
        if not found:
            raise WireError(NO_GATEWAY, f"no gateway of realm {realm!r} is up; try again soon")
        return [
            {
                "name": name,
                "host": info["host"],
                "port": info["port"],
                "websocket": info.get("websocket") or None,
            }
            for name, info in found[:MAX_GATEWAYS]
        ]

    async def realms(self) -> list[dict]:
        """Every realm with its load: players connected and gateways up."""
        services = await self.bus.services()
        result = []
        for realm in self.config.realm_names():
            gateways = [
                info
                for info in services.values()
                if info.get("kind") in GATEWAY_KINDS and info.get("realm") == realm
            ]
            result.append(
                {
                    "realm": realm,
                    "title": self.config.realm_title(realm),
                    "players": sum(int(info.get("load", 0)) for info in gateways),
                    "gateways": len(gateways),
                }
            )
        return result

    async def logout(self, token, device=None) -> None:
        """
        Revoke every ticket of the ticket's account issued until now, and
        its refresh tokens: those of C{device}, or with C{None} every one.
        """
        try:
            ticket = self.signer.verify(token, allow_expired=True)
        except TicketError as e:
            raise WireError(TICKET_REFUSED, e.reason)
        await self.store.revoke_refresh(ticket.account_id, device)
        await revoke(self.bus, self.config, ticket.account_id, self.reactor.seconds())


#: The bus channel on which gateways hear of sessions to close.
async def revoke(bus, config, account_id: str, now: float, keep: str | None = None) -> None:
    """
    Refuse every ticket of the account issued up to C{now}, and close its
    sessions on every gateway but session C{keep}.
    """
    await bus.put(revoked_key(account_id), now, ttl=config.login.ticket_ttl + 1)
    await messages.publish(
        bus, messages.SESSIONS_CHANNEL, AccountSession(account_id, keep, "logout")
    )
