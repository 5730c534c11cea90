"""
The login messages clients send: C{register}, C{login}, C{realms} and
C{logout}.  L{LoginMessages} is a mixin, so the login server's protocol and
the standalone server's (L{mmo.standalone.protocol}, which is also a
gateway) share them.
"""

from __future__ import annotations

from mmo.frontend.factory import ClientFactory
from mmo.frontend.protocol import ClientProtocol


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

    async def message_login(self, message: dict) -> dict:
        """
        Check C{name} and C{password}; return a session ticket and the
        gateway of the realm (C{realm}, optional) to present it to.
        """
        realm = self.field(message, "realm", str, required=False)
        return await self.factory.login.login(
            message.get("name"), message.get("password"), self.source_address(), realm
        )

    async def message_realms(self, message: dict) -> dict:
        """The realms to choose from, with their load."""
        return {"realms": await self.factory.login.realms()}

    async def message_logout(self, message: dict) -> dict:
        """Revoke the tickets of the account of C{ticket}, and end its sessions."""
        await self.factory.login.logout(self.field(message, "ticket", str))
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
