"""
The baseline of the connections benchmark: a bare Twisted TLS server that
accepts connections and holds them, reading and discarding what arrives.
No protocol, no sessions: what an idle TLS connection costs in Twisted
itself.

    python bench/_hold.py CERT KEY PORTFILE
"""

import os
import sys

from twisted.internet import protocol

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import serve_bare  # noqa: E402


class Hold(protocol.Protocol):
    def connectionMade(self):
        self.factory.held.add(self)

    def connectionLost(self, reason):
        self.factory.held.discard(self)

    def dataReceived(self, data):
        pass


if __name__ == "__main__":
    factory = protocol.Factory.forProtocol(Hold)
    factory.held = set()
    serve_bare(factory, backlog=1024)
