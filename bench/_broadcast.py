"""
The baseline of the chat fan-out benchmark: a bare Twisted broadcast server
over TLS.  Every frame a client sends is written to every client.  No
sessions, no routing, no bus: what fan-out costs in Twisted itself.

    python bench/_broadcast.py CERT KEY PORTFILE
"""

import os
import sys

from twisted.internet import protocol
from twisted.protocols.basic import Int32StringReceiver

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import serve_bare  # noqa: E402


class Broadcast(Int32StringReceiver):
    MAX_LENGTH = 65536

    def connectionMade(self):
        self.factory.clients.add(self)

    def connectionLost(self, reason):
        self.factory.clients.discard(self)

    def stringReceived(self, data):
        for client in self.factory.clients:
            client.sendString(data)


if __name__ == "__main__":
    factory = protocol.Factory.forProtocol(Broadcast)
    factory.clients = set()
    serve_bare(factory)
