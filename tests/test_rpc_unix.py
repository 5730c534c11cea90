"""
Unix-socket links between the processes of one machine (mmo.rpc.unix,
C{[deployment] rpc_unix_dir}): real sockets with the real reactor; the
link comes up without TLS, each end knows the other, the C{SENDERS}
checks still apply, and whatever does not identify itself as one of the
deployment's processes of this machine is refused and logged.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile

from twisted.internet import defer, endpoints, reactor
from twisted.protocols import amp
from twisted.trial import unittest

import mmo
from mmo.config import ConfigError
from mmo.rpc import (
    Ping,
    Refused,
    RPCClientService,
    RPCProtocol,
    RPCServerFactory,
    listen_port,
    unix,
)
from mmo.rpc.commands import SENDERS, Command, Identify
from tests.support import DEFAULT_PROCESSES, LogCapture, bounded, deployment

#: The default processes, and a zone on another machine (no host in common).
MACHINES = (
    DEFAULT_PROCESSES
    + """
[processes.zone-far]
kind = "zone"
rpc = "tcp:7301"
hosts = ["zone-far.example.org"]
"""
)


class GatewaysOnly(Command):
    arguments = []
    response = []


class Told(Command):
    """A command without an answer, as a gateway's inputs to a zone."""

    arguments = []
    response = []
    requiresAnswer = False


class GuardedProtocol(RPCProtocol):
    senders = {**SENDERS, GatewaysOnly: frozenset({"gateway"}), Told: frozenset({"zone"})}

    @GatewaysOnly.responder
    def gateways_only(self):
        return {}

    @Told.responder
    def told(self):
        self.factory.told += 1
        return {}


class GuardedFactory(RPCServerFactory):
    protocol = GuardedProtocol
    told = 0


class UnixLinkTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        # Short: a socket path holds at most 107 bytes.
        self.base = tempfile.mkdtemp(prefix="mmo-")
        self.addCleanup(shutil.rmtree, self.base, True)
        self.directory = os.path.join(self.base, "run")
        self.conf = deployment(self, MACHINES, extra=f'rpc_unix_dir = "{self.directory}"\n')
        self.logs = LogCapture(self)

    async def listen(self):
        factory = GuardedFactory(self.conf, self.conf.process("mmo"), reactor)
        listening = await listen_port(self.conf, "mmo", factory, reactor)
        self.addCleanup(listening.stopListening)
        return factory

    def client(self, peer="mmo") -> RPCClientService:
        service = RPCClientService(self.conf, "zone-1", peer, reactor=reactor)
        service.startService()
        self.addCleanup(lambda: bounded(service.stopService()))
        return service

    async def raw(self) -> amp.AMP:
        """A bare AMP client on mmo's socket: no identity of its own."""
        endpoint = endpoints.UNIXClientEndpoint(
            reactor, self.conf.rpc_socket(self.conf.process("mmo"))
        )
        client = await endpoints.connectProtocol(endpoint, amp.AMP())
        self.addCleanup(client.transport.loseConnection)
        return client

    async def test_link_up_without_tls(self):
        server = await self.listen()
        service = self.client()
        self.assertTrue(service.unix)
        response = await bounded(service.callRemote(Ping, nonce=7))
        self.assertEqual(
            response, {"nonce": 7, "name": "mmo", "version": mmo.__version__, "takes": ["Told"]}
        )
        [link] = server.connections
        self.assertEqual(link.peer, "zone-1")
        self.assertEqual(service.factory.connection.peer, "mmo")
        self.assertIsNone(getattr(link.transport, "getPeerCertificate", None))
        # Only this user may reach the socket.
        self.assertEqual(stat.S_IMODE(os.stat(self.directory).st_mode), 0o700)
        socket_file = os.stat(self.conf.rpc_socket(self.conf.process("mmo")))
        self.assertEqual(stat.S_IMODE(socket_file.st_mode), 0o600)
        self.assertEqual(self.logs.matching("TLS refused"), [])

    async def test_takes_known_from_identify(self):
        """
        The client learns from the server's answer to L{Identify} which
        commands without an answer it takes, as over TLS from the first
        L{Ping}: a gateway sends a zone its inputs unanswered on this link
        too.
        """
        server = await self.listen()
        service = self.client()
        await bounded(service.callRemote(Ping, nonce=1))
        self.assertTrue(service.takes(Told))
        self.assertFalse(service.takes(GatewaysOnly))
        await bounded(service.tell(Told))
        await bounded(service.callRemote(Ping, nonce=2))
        self.assertEqual(server.told, 1)

    async def test_senders_still_checked(self):
        await self.listen()
        service = self.client()
        failure = await bounded(self.assertFailure(service.callRemote(GatewaysOnly), Refused))
        self.assertIn("zone-1 (zone) may not send", str(failure))

    async def test_command_before_identify_refused(self):
        await self.listen()
        client = await self.raw()
        failure = await bounded(self.assertFailure(client.callRemote(Ping, nonce=1), Refused))
        self.assertIn("not authenticated", str(failure))

    async def test_unknown_name_refused(self):
        await self.listen()
        client = await self.raw()
        lost = defer.Deferred()
        client.connectionLost = lambda reason: lost.callback(None)
        failure = await bounded(
            self.assertFailure(client.callRemote(Identify, name="nobody"), Refused)
        )
        self.assertIn("'nobody' names none of the processes", str(failure))
        await bounded(lost)
        self.assertTrue(self.logs.matching("RPC refused", "nobody"))

    async def test_process_of_another_machine_refused(self):
        await self.listen()
        client = await self.raw()
        await bounded(self.assertFailure(client.callRemote(Identify, name="zone-far"), Refused))
        self.assertTrue(self.logs.matching("RPC refused", "does not run on this machine"))

    def test_other_machine_uses_tls(self):
        service = RPCClientService(self.conf, "mmo", "zone-far", reactor=reactor)
        self.assertFalse(service.unix)
        self.assertTrue(RPCClientService(self.conf, "mmo", "zone-1", reactor=reactor).unix)

    async def test_open_directory_refused(self):
        os.makedirs(self.directory, mode=0o755)
        os.chmod(self.directory, 0o755)
        with self.assertRaises(ConfigError) as caught:
            await listen_port(self.conf, "mmo", None, reactor)
        self.assertIn("rpc_unix_dir", str(caught.exception))
        self.assertIn("mode 0700", str(caught.exception))


class UnixConfigTests(unittest.TestCase):
    def test_path_too_long(self):
        long = "/tmp/" + "d" * 110
        with self.assertRaises(ConfigError) as caught:
            deployment(self, MACHINES, extra=f'rpc_unix_dir = "{long}"\n')
        self.assertIn("rpc_unix_dir", str(caught.exception))

    def test_default_off(self):
        conf = deployment(self, MACHINES)
        self.assertIsNone(conf.deployment.rpc_unix_dir)
        self.assertIsNone(conf.rpc_socket(conf.process("mmo")))
        self.assertFalse(unix.unix_link(conf, conf.process("zone-1"), conf.process("mmo")))
