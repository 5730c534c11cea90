"""
The baseline of the chat fan-out benchmark: a bare Twisted broadcast server
over TLS.  Every frame a client sends is written to every client.  No
sessions, no routing, no bus: what fan-out costs in Twisted itself.

    python bench/_broadcast.py CERT KEY PORTFILE
"""

import sys

from twisted.internet import endpoints, protocol, reactor, ssl
from twisted.protocols.basic import Int32StringReceiver


class Broadcast(Int32StringReceiver):
    MAX_LENGTH = 65536

    def connectionMade(self):
        self.factory.clients.add(self)

    def connectionLost(self, reason):
        self.factory.clients.discard(self)

    def stringReceived(self, data):
        for client in self.factory.clients:
            client.sendString(data)


def main(cert, key, portfile):
    with open(cert, "rb") as f:
        cert_pem = f.read()
    with open(key, "rb") as f:
        key_pem = f.read()
    options = ssl.PrivateCertificate.loadPEM(cert_pem + key_pem).options()
    factory = protocol.Factory.forProtocol(Broadcast)
    factory.clients = set()
    endpoint = endpoints.SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1")

    def listening(port):
        with open(portfile, "w") as f:
            f.write(str(port.getHost().port))

    endpoint.listen(factory).addCallback(listening)
    reactor.run()


if __name__ == "__main__":
    main(*sys.argv[1:4])
