"""
A private C{redis-server} for tests: started on a free loopback port in a
temporary directory, stopped after the test.  A server the tests did not
start (such as one on 6379) is never used.

Without C{redis-server} on the PATH the tests that need it are skipped with
the reason, except under C{MMO_REQUIRE_REDIS=1} (set by C{.ci/run}), where
they fail instead.

Also: a server with more arguments (a Unix socket, a TLS port), a Sentinel
watching a server, and the certificates a TLS server and its clients need.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.trial.unittest import SkipTest

#: Seconds a server may take to start or stop.
START_TIMEOUT = 10.0


def redis_server_path() -> str:
    """The redis-server binary, or skip (fail under MMO_REQUIRE_REDIS=1)."""
    path = shutil.which("redis-server")
    if path is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("MMO_REQUIRE_REDIS") == "1":
            raise AssertionError(f"MMO_REQUIRE_REDIS=1 but {reason}")
        raise SkipTest(reason)
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """
    One private redis-server process.

    @ivar port: Its port on 127.0.0.1.
    @ivar directory: Its working directory (data and append-only files).
    """

    def __init__(self, directory: str, appendonly: bool = False, password: str | None = None):
        self.binary = redis_server_path()
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.port = free_port()
        self.appendonly = appendonly
        self.password = password
        self.process: subprocess.Popen | None = None

    def args(self) -> list[str]:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.directory,
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            os.path.join(self.directory, "redis.log"),
            "--protected-mode",
            "yes",
        ]
        if self.appendonly:
            # Every acknowledged write is on disk before the reply.
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        return args

    def start(self) -> None:
        """Start it and wait until it answers PING."""
        self.process = subprocess.Popen(
            self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: see {self.directory}/redis.log")
            if self._ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not start in time")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                if self.password:
                    s.sendall(f"AUTH {self.password}\r\n".encode())
                    s.recv(64)
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """Kill it at once (SIGKILL): what a crash looks like."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(START_TIMEOUT)

    def stop(self) -> None:
        """Stop it (SIGTERM) and wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(START_TIMEOUT)

    def restart(self) -> None:
        """Start it again on the same port and directory."""
        self.stop()
        self.start()


def start_redis(testcase, **kwargs) -> RedisServer:
    """A started private server, stopped when C{testcase} ends."""
    server = RedisServer(os.path.abspath(testcase.mktemp()), **kwargs)
    server.start()
    testcase.addCleanup(server.stop)
    return server


def redis_config_text(server: RedisServer, prefix: str = "test") -> str:
    """A C{[redis]} section pointing at C{server}."""
    text = f'[redis]\nhost = "127.0.0.1"\nport = {server.port}\nprefix = "{prefix}"\n'
    if server.password:
        text += f'password = "{server.password}"\n'
    return text


class ExtraArgsRedis(RedisServer):
    """A private redis-server with more arguments (SOCKET: a Unix socket path)."""

    def __init__(self, testcase, extra):
        super().__init__(os.path.abspath(testcase.mktemp()))
        self.socket = os.path.join(self.directory, "redis.sock")
        self.extra = [self.socket if arg == "SOCKET" else arg for arg in extra]
        self.start()
        testcase.addCleanup(self.stop)

    def args(self):
        return super().args() + self.extra


class SentinelServer(RedisServer):
    """A private Redis Sentinel watching C{master} as C{mmo-master}."""

    def __init__(self, testcase, master):
        super().__init__(os.path.abspath(testcase.mktemp()))
        self.master = master
        self.start()
        testcase.addCleanup(self.stop)

    def args(self):
        conf = os.path.join(self.directory, "sentinel.conf")
        with open(conf, "w") as f:
            f.write(
                f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"logfile {self.directory}/sentinel.log\n"
                f"sentinel monitor mmo-master 127.0.0.1 {self.master.port} 1\n"
            )
        return [self.binary, conf, "--sentinel"]


def make_tls_files(directory: str) -> tuple[str, str]:
    """A CA, a server certificate for 127.0.0.1 it signed, and another CA."""

    def name(text):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject, issuer, public_key, signing_key, ca, alt=None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if alt:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    def write(file, data):
        path = os.path.join(directory, file)
        with open(path, "wb") as f:
            f.write(data)
        return path

    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate(name("test CA"), name("test CA"), ca_key.public_key(), ca_key, True)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = certificate(name("other CA"), name("other CA"), other_key.public_key(), other_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    alt = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    server = certificate(name("redis"), name("test CA"), key.public_key(), ca_key, False, alt)
    write(
        "server.key",
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    write("server.crt", server.public_bytes(pem))
    return write("ca.crt", ca.public_bytes(pem)), write("other.crt", other.public_bytes(pem))
