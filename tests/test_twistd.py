"""
Integration tests against the real thing: C{twistd -n mmo} in a subprocess,
reached over real TLS on loopback.
"""

import json
import os
import re
import signal
import sys

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import (
    HostnameEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.trial import unittest

from mmo import tls
from mmo.client import ServerError, client_tls_options, connect
from mmo.wire import codec
from tests.support import STANDALONE, decode_frames, deployment, write_config

#: How long a twistd process may take to start or stop before the test fails.
PROCESS_TIMEOUT = 30.0


def twistd_command(*args):
    """The twistd of this interpreter's environment, with C{args}."""
    code = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
    return [sys.executable, "-c", code, *args]


def subprocess_env():
    """The environment for a child: the installed package, not a source path."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


class TwistdProcess(protocol.ProcessProtocol):
    """A twistd child: its output, when it listens, and when it ends."""

    def __init__(self):
        self.out = b""
        self.err = b""
        self.ended = defer.Deferred()
        self._waiting = []
        self._exits = []

    def outReceived(self, data):
        self.out += data
        self._check()

    def errReceived(self, data):
        self.err += data

    done = False

    def processEnded(self, reason):
        self.done = True
        self.status = reason.value.exitCode
        self.signal = reason.value.signal
        for pattern, d in self._waiting:
            d.errback(AssertionError(f"twistd ended before {pattern!r}: {self.output()}"))
        self._waiting = []
        if not self.ended.called:
            self.ended.callback(self.status)
        exits, self._exits = self._exits, []
        for d in exits:
            d.callback(self.status)

    def whenExited(self):
        """Fires once the process has exited (however long the test waited)."""
        if self.done:
            return defer.succeed(self.status)
        d = defer.Deferred()
        self._exits.append(d)
        return d

    def output(self):
        return (self.out + self.err).decode("utf-8", "replace")

    def supervised(self) -> set[int]:
        """The pids of the processes this twistd, a manager, said it started."""
        text = self.out.decode("utf-8", "replace")
        return {int(pid) for pid in re.findall(r": started, pid (\d+)", text)}

    def whenLogged(self, pattern):
        """
        Fire with the first match of C{pattern} in what the process logged
        (its standard output); fail if it ends first or takes longer than
        L{PROCESS_TIMEOUT}.
        """

        def forget(d):
            # Timed out (or cancelled): a later match must not fire it again.
            if entry in self._waiting:
                self._waiting.remove(entry)

        d = defer.Deferred(forget)
        entry = (re.compile(pattern), d)
        self._waiting.append(entry)
        self._check()
        return d.addTimeout(PROCESS_TIMEOUT, reactor)

    def _check(self):
        text = self.out.decode("utf-8", "replace")
        for entry in list(self._waiting):
            match = entry[0].search(text)
            if match:
                self._waiting.remove(entry)
                entry[1].callback(match)


def kill_twistd(child: TwistdProcess, transport) -> defer.Deferred | None:
    """
    SIGKILL twistd C{child} unless it ended; once it has, SIGKILL what it
    supervised and left running (a manager's processes get SIGTERM when it
    dies, but a test must leave nothing behind whatever they do with it).
    """

    def orphans(_):
        for pid in child.supervised():
            try:
                # A process the manager started leads a session of its own
                # (mmo.manager.detach): a reused pid would not.
                if os.getsid(pid) == pid:
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    if child.done:
        orphans(None)
        return None
    transport.signalProcess("KILL")
    return child.whenExited().addCallback(orphans)


def spawn(testcase, config_path, plugin="mmo", *args, pythonpath: str | None = None):
    """
    Start C{twistd -n PLUGIN --config config_path ARGS}; stop it at cleanup.
    C{pythonpath}: where the child finds a game's own modules (the installed
    package comes first either way).
    """
    child = TwistdProcess()
    pidfile = os.path.abspath(testcase.mktemp())
    env = subprocess_env()
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    transport = reactor.spawnProcess(
        child,
        sys.executable,
        twistd_command("-n", "--pidfile", pidfile, plugin, "--config", config_path, *args),
        env=env,
    )

    # Not "ended.called": a timeout fires that Deferred while the child lives.
    testcase.addCleanup(kill_twistd, child, transport)
    return child, transport


class RawTLSClient(protocol.Protocol):
    """Writes raw bytes over TLS and collects what comes back."""

    def __init__(self, payload):
        self.payload = payload
        self.received = b""
        self.lost = defer.Deferred()

    def connectionMade(self):
        self.transport.write(self.payload)

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost.callback(self.received)


class StandaloneTests(unittest.TestCase):
    def assertStoppedBy(self, child, signum):
        """
        A clean stop: twistd shuts down, then ends itself with the signal it
        got (Twisted's convention, so supervisors see why it stopped).
        """
        self.assertIn("Server Shut Down.", child.output())
        self.assertIn(child.signal, (signum, None), child.output())
        if child.signal is None:
            self.assertEqual(child.status, 0, child.output())

    @defer.inlineCallbacks
    def test_serve_ping_garbage_and_shutdown(self):
        """
        The real server verifies over TLS, answers ping, closes a connection
        that sends garbage with an error frame while another connection goes
        on unaffected, and on SIGTERM says goodbye and exits cleanly.
        """
        config = deployment(self, STANDALONE)
        child, transport = spawn(self, config.file)
        match = yield child.whenLogged(r"clients on TLS 127\.0\.0\.1:(\d+)")
        port = int(match.group(1))
        yield child.whenLogged(r"mmo: ready")
        ca = tls.ca_path(config.deployment.tls_dir)

        client = yield connect(reactor, "127.0.0.1", port, ca=ca, hostname="localhost")
        goodbyes = []
        client.on("bye", goodbyes.append)
        reply = yield client.request("ping")
        self.assertIsInstance(reply["time"], float)

        # Another connection: a handshake, then garbage announcing a huge frame.
        garbage = codec.frame({"t": "hello", "id": 1, "versions": [1]}) + b"\xff" * 64
        raw = RawTLSClient(garbage)
        endpoint = wrapClientTLS(
            client_tls_options("localhost", ca), HostnameEndpoint(reactor, "127.0.0.1", port)
        )
        yield connectProtocol(endpoint, raw)
        received = yield raw.lost.addTimeout(PROCESS_TIMEOUT, reactor)
        answers = decode_frames(received)
        self.assertEqual(answers[0]["t"], "reply")
        self.assertEqual(answers[-1]["t"], "error")
        self.assertEqual(answers[-1]["code"], "frame_too_large")
        self.assertTrue(answers[-1]["fatal"])

        # The first connection did not notice.
        reply = yield client.request("ping")
        self.assertIsInstance(reply["time"], float)
        with self.assertRaises(ServerError) as caught:
            yield client.request("no-such-thing")
        self.assertEqual(caught.exception.code, "auth_required")

        transport.signalProcess("TERM")
        closed = yield client.whenClosed()
        self.assertEqual(closed.code, "shutdown")
        self.assertEqual([bye["code"] for bye in goodbyes], ["shutdown"])
        yield child.ended.addTimeout(PROCESS_TIMEOUT, reactor)
        self.assertStoppedBy(child, signal.SIGTERM)
        self.assertNotIn("Traceback", child.output())
        self.assertIn("frame_too_large", child.output())
        self.assertIn("goodbye 127.0.0.1", child.output())

    @defer.inlineCallbacks
    def test_json_logging(self):
        """With [logging] format = "json", every line is a JSON object naming the process."""
        config = deployment(self, STANDALONE, extra='[logging]\nformat = "json"\n')
        child, transport = spawn(self, config.file)
        yield child.whenLogged(r"mmo: ready")
        transport.signalProcess("INT")
        yield child.ended.addTimeout(PROCESS_TIMEOUT, reactor)
        self.assertStoppedBy(child, signal.SIGINT)
        lines = child.out.decode().splitlines()
        self.assertTrue(lines)
        records = [json.loads(line) for line in lines]
        self.assertEqual({r["service"] for r in records}, {"mmo"})
        self.assertTrue(any("clients on TLS" in r["text"] for r in records))
        self.assertTrue(all(r["level"] in ("debug", "info", "warn", "error") for r in records))


class StartFailureTests(unittest.TestCase):
    """A misconfigured deployment fails at start: file, key, reason, no traceback."""

    @defer.inlineCallbacks
    def assertStartFails(self, config_path, *fragments):
        child, _ = spawn(self, config_path)
        status = yield child.ended.addTimeout(PROCESS_TIMEOUT, reactor)
        self.assertNotEqual(status, 0)
        # Before logging starts the reason goes to stderr; after, into the log.
        error = child.output()
        self.assertNotIn("Traceback", error)
        for fragment in fragments:
            self.assertIn(fragment, error)

    def test_unknown_key(self):
        path = write_config(self, STANDALONE + "\n[wire]\nmax_frame = 10\n")
        return self.assertStartFails(path, f"{path}: wire.max_frame: unknown key")

    def test_bad_endpoint(self):
        path = write_config(self, STANDALONE.replace("tcp:0:", "tcp:zero:"))
        return self.assertStartFails(path, f"{path}: processes.mmo.client:", "not a valid")

    def test_missing_file(self):
        path = os.path.abspath(os.path.join(self.mktemp(), "nothing.toml"))
        return self.assertStartFails(path, f"{path}: cannot read")

    def test_missing_certificates(self):
        path = write_config(self, STANDALONE)
        return self.assertStartFails(path, f"{path}: deployment.tls_dir:", "mmo-certs")

    def test_port_in_use(self):
        config = deployment(self, STANDALONE)
        busy = reactor.listenTCP(0, protocol.Factory(), interface="127.0.0.1")
        self.addCleanup(busy.stopListening)
        port = busy.getHost().port
        with open(config.file) as f:
            text = f.read().replace("tcp:0:interface", f"tcp:{port}:interface")
        with open(config.file, "w") as f:
            f.write(text)
        return self.assertStartFails(
            config.file, f"{config.file}: processes.mmo.client: cannot listen", "in use"
        )

    def test_no_config_option(self):
        child, _ = spawn_plain(self, "mmo")
        return child.ended.addCallback(self.assertNotEqual, 0)


def spawn_plain(testcase, *args):
    child = TwistdProcess()
    pidfile = os.path.abspath(testcase.mktemp())
    reactor.spawnProcess(
        child,
        sys.executable,
        twistd_command("-n", "--pidfile", pidfile, *args),
        env=subprocess_env(),
    )
    return child, None
