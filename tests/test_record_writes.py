"""
L{mmo.compat.RecordWrites}: a tick's TLS writes to many connections in one
compiled loop (C{mmo._tlswrite}), on a real client listener over TLS on
loopback, read by real clients; what the loop does not complete finished
as C{writeNow} finishes it; and the Python path where the module is not
there.
"""

from __future__ import annotations

import sys

from OpenSSL import SSL
from twisted.internet import defer, reactor, task
from twisted.trial import unittest

import mmo
from mmo import compat, tls
from mmo.client import connect
from mmo.compat import RecordWrites
from mmo.game.service import Caller
from mmo.gateway.session import PUSHES_SENT, Session
from mmo.wire import codec
from tests import support
from tests.test_compat import TLSListener, frame

needs_compiled = None if RecordWrites.compiled else "mmo._tlswrite is not built"


class Listener(TLSListener):
    """A client listener over TLS on loopback, and its clients."""

    async def clients(self, count: int) -> list:
        """C{count} clients, ready, and their connections' server sides, in the same order."""
        pairs = []
        for _ in range(count):
            client = await connect(
                reactor,
                "127.0.0.1",
                self.listener.port.getHost().port,
                ca=tls.ca_path(self.config.deployment.tls_dir),
                hostname="localhost",
            )
            self.addCleanup(
                lambda c=client: c.transport.connected and c.transport.abortConnection()
            )
            await client.request("ping")
            (server,) = [c for c in self.factory.connections if c not in [s for _, s in pairs]]
            pairs.append((client, server))
        return pairs

    def heard(self, client, kind: str, count: int) -> tuple[list, defer.Deferred]:
        """What C{client} is pushed of C{kind}, and a Deferred of C{count} of them."""
        heard = []
        arrived = defer.Deferred()

        def received(message):
            heard.append(message)
            if len(heard) == count and not arrived.called:
                arrived.callback(heard)

        client.on(kind, received)
        return heard, support.bounded(arrived)

    def first_finishing_fails(self, transport) -> Exception:
        """
        The compiled loop leaves the first queued write unwritten, and
        finishing it in Python on C{transport} raises: the exception.
        """
        real = compat._records

        class Refuses:
            @staticmethod
            def send_records(entries, start):
                if start == 0:
                    return (0, 0, None)
                return real.send_records(entries, start)

        failure = RuntimeError("finishing failed")

        def wrote(data, written):
            raise failure

        self.patch(compat, "_records", Refuses)
        self.patch(transport, "_wroteRecord", wrote)
        return failure


class RecordWritesTests(Listener, unittest.TestCase):
    """The compiled loop on real connections."""

    skip = needs_compiled

    async def test_written_at_once_in_order(self):
        """
        Each connection's write is queued, then sent by L{RecordWrites.send}
        in one go: its client reads what was written, after what the
        connection was written before and before what it is written after;
        nothing is scheduled and no socket is watched for writability.
        """
        pairs = await self.clients(3)
        heard = [self.heard(client, "tick", 3) for client, _ in pairs]
        writes = RecordWrites()
        delayed = len(reactor.getDelayedCalls())
        for i, (_, server) in enumerate(pairs):
            server.transport.writeNow(frame("tick", n=1, to=i))
            self.assertTrue(writes.add(server.transport, frame("tick", n=2, to=i), i))
        self.assertEqual(len(writes), 3)
        self.assertEqual(writes.send(), [])
        self.assertEqual(len(writes), 0)
        self.assertEqual(len(reactor.getDelayedCalls()), delayed)
        for _, server in pairs:
            self.assertNotIn(server.transport.transport, reactor.getWriters())
            server.sendFrame(frame("tick", n=3))
        for i, (messages, arrived) in enumerate(heard):
            await arrived
            self.assertEqual([m["n"] for m in messages], [1, 2, 3])
            self.assertEqual([m.get("to") for m in messages], [i, i, None])

    async def test_what_the_loop_does_not_take(self):
        """
        A write that is not one record sent at once is not queued: more
        than a record, not bytes, empty, a connection with writes
        gathered for the end of the turn, or one that is closing or gone.
        """
        (client, server), (_, other) = await self.clients(2)
        writes = RecordWrites()
        protocol = server.transport
        self.assertFalse(writes.add(protocol, b"x" * (2**14 + 1), 0))
        self.assertFalse(writes.add(protocol, bytearray(b"x"), 0))
        self.assertFalse(writes.add(protocol, b"", 0))
        self.assertFalse(writes.add(server, frame("tick", n=1), 0))
        server.sendFrame(frame("tick", n=1))
        self.assertFalse(writes.add(protocol, frame("tick", n=2), 0))
        other._close()
        self.assertFalse(writes.add(other.transport, frame("tick", n=2), 0))
        self.assertEqual(len(writes), 0)
        closed = client.whenClosed()
        server.transport.abortConnection()
        await closed
        while server in self.factory.connections:
            await task.deferLater(reactor, 0.01, lambda: None)
        self.assertFalse(writes.add(protocol, frame("tick", n=3), 0))

    async def test_partial_send_buffered_in_order(self):
        """
        When the kernel takes part of a record, the rest is buffered by the
        socket's transport (which then watches the socket, and pauses its
        producer past its size); the connection's next writes are not
        queued but go after it; everything arrives, in order, once the
        client reads.
        """
        ((client, server),) = await self.clients(1)
        socket_transport = server.transport.transport
        client.transport.pauseProducing()
        per_write = 100
        n = 0
        # Bounded: loopback's kernel buffers hold a few MB at most.
        for _ in range(2000):
            writes = RecordWrites()
            frames = b"".join(frame("tick", n=n + i, pad="p" * 120) for i in range(per_write))
            self.assertLessEqual(len(frames), 2**14)
            self.assertTrue(writes.add(server.transport, frames, None))
            self.assertEqual(writes.send(), [])
            n += per_write
            if socket_transport.dataBuffer or socket_transport._tempDataLen:
                break
        self.assertIn(socket_transport, reactor.getWriters())
        writes = RecordWrites()
        self.assertFalse(writes.add(server.transport, frame("tick", n=n), None))
        server.transport.writeNow(frame("tick", n=n))
        n += 1
        messages, arrived = self.heard(client, "tick", n)
        client.transport.resumeProducing()
        await support.bounded(arrived, 60)
        self.assertEqual([m["n"] for m in messages], list(range(n)))

    async def test_refused_by_tls(self):
        """
        A record OpenSSL refuses (written after TLS was shut down) ends
        that connection as C{writeNow} ends it, with the error; the writes
        queued after it are sent.
        """
        (_, server), (other_client, other) = await self.clients(2)
        lost = support.when_lost(server)
        server.transport._tlsConnection.shutdown()
        messages, arrived = self.heard(other_client, "tick", 1)
        writes = RecordWrites()
        self.assertTrue(writes.add(server.transport, frame("tick", n=1), "refused"))
        self.assertTrue(writes.add(other.transport, frame("tick", n=2), "sent"))
        self.assertEqual(writes.send(), [])
        (reason,) = await support.bounded(lost)
        reason.trap(SSL.Error)
        await arrived
        self.assertEqual(messages[0]["n"], 2)

    async def test_want_read_buffered(self):
        """
        An C{SSL_write} that wants to read first (a renegotiation's) leaves
        the write in Twisted's TLS buffer, as C{writeNow} leaves it: the
        connection's next writes are not queued, and it is sent once the
        connection reads; the writes queued after it are sent at once.
        """
        (client, server), (other_client, other) = await self.clients(2)
        refused = server.transport
        real = compat._records
        connection = refused._tlsConnection
        raise_ssl_error = connection._raise_ssl_error

        class WantsRead:
            """The loop, but the first SSL_write (C{refused}'s) wants to read."""

            @staticmethod
            def send_records(entries, start):
                if start == 0:
                    return (0, -1, None)
                return real.send_records(entries, start)

        def want_read(ssl, result):
            # Once: OpenSSL's answer to the write above.
            connection._raise_ssl_error = raise_ssl_error
            raise SSL.WantReadError()

        self.patch(compat, "_records", WantsRead)
        self.patch(connection, "_raise_ssl_error", want_read)
        messages, arrived = self.heard(client, "tick", 1)
        other_messages, other_arrived = self.heard(other_client, "tick", 1)
        writes = RecordWrites()
        self.assertTrue(writes.add(refused, frame("tick", n=1), 0))
        self.assertTrue(writes.add(other.transport, frame("tick", n=1), 1))
        self.assertEqual(writes.send(), [])
        self.assertEqual(refused._appSendBuffer, [frame("tick", n=1)])
        self.assertFalse(writes.add(refused, frame("tick", n=2), 0))
        await other_arrived
        self.assertEqual(messages, [])
        # What the connection reads lets TLS write what it buffered.
        self.assertIn("time", await client.request("ping"))
        await arrived
        self.assertEqual([m["n"] for m in messages], [1])
        self.assertEqual(refused._appSendBuffer, [])

    async def test_finishing_failure_reported(self):
        """
        A write whose finishing in Python raises is reported with its tag;
        the other writes are sent.
        """
        (_, server), (other_client, other) = await self.clients(2)
        failure = self.first_finishing_fails(server.transport)
        messages, arrived = self.heard(other_client, "tick", 1)
        writes = RecordWrites()
        self.assertTrue(writes.add(server.transport, frame("tick", n=1), "first"))
        self.assertTrue(writes.add(other.transport, frame("tick", n=1), "second"))
        self.assertEqual(writes.send(), [("first", failure)])
        await arrived


class SessionsTests(Listener, unittest.TestCase):
    """L{Session.push_stems_to} on real connections, compiled or not."""

    def sessions(self, pairs) -> list[Session]:
        sessions = []
        for i, (_, server) in enumerate(pairs):
            server.state = "open"
            session = Session(Caller(f"s{i}", "gw", f"a{i}", f"p{i}"), None, "t", 10, 1000)
            session.attach(server)
            sessions.append(session)
        return sessions

    async def pushed(self):
        """Two ticks pushed to three sessions: each client gets its own, numbered, in order."""
        pairs = await self.clients(3)
        sessions = self.sessions(pairs)
        heard = [self.heard(client, "tick", 3) for client, _ in pairs]
        counted = PUSHES_SENT.value
        stem = codec.push_stem
        first = [(s, [stem("tick", {"n": 1, "to": i})]) for i, s in enumerate(sessions)]
        second = [
            (s, [stem("tick", {"n": 2, "to": i}), stem("tick", {"n": 3, "to": i})])
            for i, s in enumerate(sessions)
        ]
        self.assertEqual(Session.push_stems_to(first), [])
        self.assertEqual(Session.push_stems_to(second), [])
        self.assertEqual(PUSHES_SENT.value - counted, 9)
        for i, (messages, arrived) in enumerate(heard):
            await arrived
            self.assertEqual(
                [(m["n"], m["to"], m["seq"]) for m in messages], [(1, i, 1), (2, i, 2), (3, i, 3)]
            )
        self.assertEqual([s.seq for s in sessions], [3, 3, 3])
        self.assertEqual([len(s.outbox) for s in sessions], [3, 3, 3])

    async def test_compiled(self):
        """Through the compiled loop (none of the writes left to the reactor's turn)."""
        if needs_compiled:
            raise unittest.SkipTest(needs_compiled)
        queued = []
        add = RecordWrites.add

        def counted(writes, protocol, data, tag):
            taken = add(writes, protocol, data, tag)
            queued.append(taken)
            return taken

        self.patch(RecordWrites, "add", counted)
        await self.pushed()
        self.assertEqual(queued, [True] * 6)

    async def test_python(self):
        """The same, with the compiled module missing: each connection written by C{writeNow}."""
        self.patch(RecordWrites, "compiled", False)
        written = []
        write_now = compat.TLSWriteThrough.writeNow

        def counted(protocol, data):
            written.append(data)
            write_now(protocol, data)

        self.patch(compat.TLSWriteThrough, "writeNow", counted)
        await self.pushed()
        # The pushes' (the replies to the clients' handshakes are written so too).
        self.assertEqual(len([data for data in written if b"tick" in data]), 6)

    async def test_failures_in_order(self):
        """
        A queued write that failed as it was finished is reported in the
        place its session's failure had before (after its own stems',
        before the next session's) and is not counted as sent.
        """
        if needs_compiled:
            raise unittest.SkipTest(needs_compiled)
        pairs = await self.clients(2)
        first, second = self.sessions(pairs)
        failure = self.first_finishing_fails(pairs[0][1].transport)
        counted = PUSHES_SENT.value
        good = codec.push_stem("tick", {"n": 1})
        failed = Session.push_stems_to([(first, [b"bad", good]), (second, [b"bad", good])])
        self.assertEqual([s for s, _ in failed], [first, first, second])
        self.assertIsInstance(failed[0][1], ValueError)
        self.assertIs(failed[1][1], failure)
        self.assertIsInstance(failed[2][1], ValueError)
        self.assertEqual(PUSHES_SENT.value - counted, 1)
        self.assertEqual((first.seq, second.seq), (1, 1))


class LoadingTests(unittest.TestCase):
    """Where the compiled module cannot be had, nothing is queued."""

    def test_module_missing(self):
        built = sys.modules.pop("mmo._tlswrite", None)
        had = mmo.__dict__.pop("_tlswrite", None)

        def restore():
            sys.modules.pop("mmo._tlswrite", None)
            if built is not None:
                sys.modules["mmo._tlswrite"] = built
            if had is not None:
                mmo._tlswrite = had

        self.addCleanup(restore)
        # None in sys.modules: the import fails, as where it is not built.
        sys.modules["mmo._tlswrite"] = None
        self.assertIsNone(compat._compiled_records())

    def test_pure_python(self):
        self.patch(compat.os, "environ", {"MMO_PURE_PYTHON": "1"})
        self.assertIsNone(compat._compiled_records())

    def test_not_compiled_takes_nothing(self):
        self.patch(RecordWrites, "compiled", False)
        protocol = object.__new__(compat.TLSWriteThrough)
        self.assertFalse(RecordWrites().add(protocol, b"frame", 0))

    def test_built(self):
        """Where it is built (make venv), it is loaded, bound to pyOpenSSL's OpenSSL."""
        if needs_compiled:
            raise unittest.SkipTest(needs_compiled)
        self.assertIsNotNone(compat._compiled_records())
