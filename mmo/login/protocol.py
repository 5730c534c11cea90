"""
The login messages clients send: C{register}, C{login}, C{realms} and
C{logout}.  L{LoginMessages} is a mixin, so the login server's protocol and
the standalone server's (L{mmo.standalone.protocol}, which is also a
gateway) share them.
"""

from __future__ import annotations

from mmo.frontend.factory import ClientFactory
from mmo.frontend.protocol import ClientProtocol
from mmo.login.refresh import MAX_DEVICE_LENGTH, check_device
from mmo.metrics.kinds import LabelCache
from mmo.metrics.registry import LOGIN_ATTEMPTS
from mmo.wire.codes import BAD_REQUEST, WireError

#: Logins by outcome: C{ok}, the error code a client was given, or C{error}.
OUTCOMES = LabelCache(LOGIN_ATTEMPTS, limit=64, fixed=("ok", "error"))


async def counted(attempt):
    """The result of the login C{attempt} (awaitable), its outcome counted."""
    try:
        result = await attempt
    except WireError as e:
        OUTCOMES.child(e.code).inc()
        raise
    except Exception:
        OUTCOMES.child("error").inc()
        raise
    OUTCOMES.child("ok").inc()
    return result


class LoginMessages:
    """
    Handlers of the login messages; C{self.factory.login} is the
    L{mmo.login.service.LoginService}.
    """

    login_messages = frozenset({"register", "login", "realms", "logout"})

    def source_address(self) -> str:
        """The client's address, which throttles count by."""
        address = self.transport.getPeer()
        return str(getattr(address, "host", address))

    async def message_register(self, message: dict) -> dict:
        """Create an account: C{name}, C{password}."""
        account = await self.factory.login.register(
            message.get("name"), message.get("password"), self.source_address()
        )
        return {"account": account.id, "name": account.name}

    def device(self, message: dict, required: bool) -> str | None:
        """The checked C{device} label of C{message}."""
        device = self.field(message, "device", str, required=required)
        if device is not None and check_device(device) is None:
            raise WireError(
                BAD_REQUEST, f"a device label has 1 to {MAX_DEVICE_LENGTH} printable characters"
            )
        return device

    async def message_login(self, message: dict) -> dict:
        """
        Check C{name} and C{password} (or the C{refresh} token of
        C{device}); return a session ticket and the gateway of the realm
        (C{realm}, optional) to present it to.  With C{remember} true and a
        C{device} label, or with C{refresh}, the reply also carries the
        device's next C{refresh} token.
        """
        realm = self.field(message, "realm", str, required=False)
        login = self.factory.login
        if "refresh" in message:
            if "password" in message:
                raise WireError(BAD_REQUEST, "a login has a password or a refresh token, not both")
            refresh = self.field(message, "refresh", str)
            return await counted(
                login.login_refresh(
                    refresh, self.device(message, True), self.source_address(), realm
                )
            )
        remember = self.field(message, "remember", bool, False, required=False)
        return await counted(
            login.login(
                message.get("name"),
                message.get("password"),
                self.source_address(),
                realm,
                device=self.device(message, True) if remember else None,
            )
        )

    async def message_realms(self, message: dict) -> dict:
        """The realms to choose from, with their load."""
        return {"realms": await self.factory.login.realms()}

    async def message_logout(self, message: dict) -> dict:
        """
        Revoke the tickets of the account of C{ticket}, and end its
        sessions; revoke its refresh tokens: that of C{device} if given,
        else every one.
        """
        await self.factory.login.logout(
            self.field(message, "ticket", str), self.device(message, False)
        )
        return {}


class LoginProtocol(LoginMessages, ClientProtocol):
    """A client of the C{mmo-login} server."""


class LoginFactory(ClientFactory):
    """
    Builds login connections.

    @ivar login: The L{mmo.login.service.LoginService}.
    """

    protocol = LoginProtocol

    def __init__(self, config, process, reactor=None, *, login):
        super().__init__(config, process, reactor)
        self.login = login
