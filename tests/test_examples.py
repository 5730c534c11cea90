"""
The examples work: the emote example's factory is loaded by name from its
config and its message reaches the other players.
"""

import os
import sys

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial import unittest

from mmo import config
from mmo.gateway.service import factory_class
from mmo.wire import codec

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def read_frames(transport):
    data, result = transport.value(), []
    while data:
        (length,) = codec.HEADER.unpack(data[:4])
        result.append(codec.decode(data[4 : 4 + length]))
        data = data[4 + length :]
    transport.clear()
    return result


class EmoteExampleTests(unittest.TestCase):
    def setUp(self):
        sys.path.insert(0, EXAMPLES)
        self.addCleanup(sys.path.remove, EXAMPLES)
        conf = config.load(os.path.join(EXAMPLES, "emote.toml"))
        process = conf.process(kind="mmo")
        cls = factory_class(conf, process)
        self.assertEqual(cls.__name__, "EmoteFactory")
        self.factory = cls(conf, process, reactor=MemoryReactorClock())

    def connect(self, port):
        proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        proto.makeConnection(transport)
        proto.dataReceived(codec.frame({"t": "hello", "id": 1, "versions": [1]}))
        self.assertEqual(read_frames(transport)[0]["t"], "reply")
        return proto, transport

    def test_emote_reaches_others(self):
        alice, alice_wire = self.connect(5001)
        bob, bob_wire = self.connect(5002)
        alice.dataReceived(codec.frame({"t": "emote", "id": 2, "name": "wave"}))
        self.assertEqual(read_frames(alice_wire), [{"t": "reply", "id": 2, "count": 1}])
        pushed = read_frames(bob_wire)
        self.assertEqual(len(pushed), 1)
        self.assertEqual(pushed[0]["t"], "emote")
        self.assertEqual(pushed[0]["name"], "wave")
        self.assertEqual(pushed[0]["by"], "127.0.0.1:5001")
        self.assertEqual(pushed[0]["seq"], 1)

    def test_unknown_emote_refused(self):
        alice, alice_wire = self.connect(5001)
        alice.dataReceived(codec.frame({"t": "emote", "id": 2, "name": "moonwalk"}))
        (error,) = read_frames(alice_wire)
        self.assertEqual(error["code"], "bad_request")
        self.assertEqual(error["id"], 2)
        self.assertFalse(alice_wire.disconnecting)
