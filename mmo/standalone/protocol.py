"""
The standalone server's client connections: a gateway that also answers the
login messages, so that one process logs players in and admits them.
"""

from __future__ import annotations

from mmo.gateway.factory import GatewayFactory
from mmo.gateway.protocol import GatewayProtocol
from mmo.login.protocol import LoginMessages


class StandaloneProtocol(LoginMessages, GatewayProtocol):
    """
    A client of the standalone server, which logs in and admits in one
    process: the login messages are open before the ticket is presented.
    """

    before_auth = GatewayProtocol.before_auth | LoginMessages.login_messages

    async def message_logout(self, message: dict) -> dict:
        if self.ticket is not None:
            return await GatewayProtocol.message_logout(self, message)
        return await LoginMessages.message_logout(self, message)


class StandaloneFactory(GatewayFactory):
    """
    The standalone server's gateway, which also logs players in.

    @ivar login: The L{mmo.login.service.LoginService}.
    """

    protocol = StandaloneProtocol

    def __init__(self, config, process, reactor, *, login, **parts):
        super().__init__(config, process, reactor, **parts)
        self.login = login
