"""
The examples work: the emote example's factory is loaded by name from its
config and its message reaches the other players.
"""

import os
import sys

from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial import unittest

from mmo import config
from mmo.bus.memory import MemoryBus
from mmo.gateway.admission import Admission
from mmo.gateway.service import factory_class
from mmo.login.protocol import StandaloneFactory
from mmo.login.tickets import TicketSigner
from mmo.wire import codec
from tests.support import written_frames

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


class EmoteExampleTests(unittest.TestCase):
    def setUp(self):
        sys.path.insert(0, EXAMPLES)
        self.addCleanup(sys.path.remove, EXAMPLES)
        conf = config.load(os.path.join(EXAMPLES, "emote.toml"))
        process = conf.process(kind="mmo")
        cls = factory_class(conf, process, StandaloneFactory)
        self.assertEqual(cls.__name__, "EmoteFactory")
        clock = MemoryReactorClock()
        self.factory = cls(conf, process, reactor=clock)
        self.factory.bus = MemoryBus(reactor=task.Clock())
        self.signer = TicketSigner(b"k" * 64, 60, clock)
        self.factory.admission = Admission(self.signer, self.factory.bus, "main", clock)

    def connect(self, port, name):
        """A connection, handshaken and admitted as C{name} with a real ticket."""
        proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        proto.makeConnection(transport)
        proto.dataReceived(codec.frame({"t": "hello", "id": 1, "versions": [1]}))
        self.assertEqual(written_frames(transport)[0]["t"], "reply")
        ticket = self.signer.issue(f"id-{name}", name, "main")[0]
        proto.dataReceived(codec.frame({"t": "auth", "id": 2, "ticket": ticket}))
        self.assertEqual(written_frames(transport)[0]["name"], name)
        return proto, transport

    def test_emote_reaches_others(self):
        alice, alice_wire = self.connect(5001, "Alice")
        bob, bob_wire = self.connect(5002, "Bob")
        alice.dataReceived(codec.frame({"t": "emote", "id": 3, "name": "wave"}))
        self.assertEqual(written_frames(alice_wire), [{"t": "reply", "id": 3, "count": 1}])
        pushed = written_frames(bob_wire)
        self.assertEqual(len(pushed), 1)
        self.assertEqual(pushed[0]["t"], "emote")
        self.assertEqual(pushed[0]["name"], "wave")
        self.assertEqual(pushed[0]["by"], "Alice")
        self.assertEqual(pushed[0]["seq"], 1)

    def test_emote_needs_a_session(self):
        proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5003))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5003))
        proto.makeConnection(transport)
        proto.dataReceived(codec.frame({"t": "hello", "id": 1, "versions": [1]}))
        proto.dataReceived(codec.frame({"t": "emote", "id": 2, "name": "wave"}))
        self.assertEqual(written_frames(transport)[-1]["code"], "auth_required")

    def test_unknown_emote_refused(self):
        alice, alice_wire = self.connect(5001, "Alice")
        alice.dataReceived(codec.frame({"t": "emote", "id": 3, "name": "moonwalk"}))
        (error,) = written_frames(alice_wire)
        self.assertEqual(error["code"], "bad_request")
        self.assertEqual(error["id"], 3)
        self.assertFalse(alice_wire.disconnecting)
