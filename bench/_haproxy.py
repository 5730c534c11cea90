"""
HAProxy terminating TLS in front of a plain TCP server, with the PROXY
protocol v2 to the server: what bench/tls.py measures and what the
deployment test (tests/test_haproxy_e2e.py) runs in front of a real
C{twistd mmo}.  The configuration is the one docs/deployment.md
documents (examples/haproxy.cfg), with ports and files filled in.

HAProxy comes from the system's packages (Debian: C{apt-get install -y
haproxy}); L{binary} is C{None} when it is not installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

#: Seconds HAProxy has to start listening.
START_TIMEOUT = 20.0


def binary() -> str | None:
    """The haproxy program on the PATH (or in /usr/sbin), or C{None}."""
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pem_bundle(certificate: str, key: str, path: str) -> str:
    """Write the certificate chain and its key into one file, as HAProxy's C{crt} reads it."""
    with open(path, "wb") as out:
        for part in (certificate, key):
            with open(part, "rb") as f:
                out.write(f.read())
    os.chmod(path, 0o600)
    return path


def config_text(
    port: int, backend_port: int, pem: str, alpn: str = "mmo", threads: int = 1, maxconn: int = 4000
) -> str:
    """
    HAProxy's configuration: TLS (1.2 or newer, ALPN C{alpn}) on 127.0.0.1:C{port},
    each connection passed to 127.0.0.1:C{backend_port} with a PROXY v2 header;
    C{maxconn} connections at most (each takes two descriptors).
    """
    return f"""\
global
    nbthread {threads}
    maxconn {maxconn}
    ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend players
    bind 127.0.0.1:{port} ssl crt {pem} alpn {alpn}
    default_backend gateways

backend gateways
    server gateway-1 127.0.0.1:{backend_port} send-proxy-v2
"""


class HAProxy:
    """
    One haproxy process in the foreground (C{-db}).

    @ivar port: Where it listens for TLS, on 127.0.0.1.
    @ivar process: The running process, once started.
    """

    def __init__(
        self,
        directory: str,
        backend_port: int,
        certificate: str,
        key: str,
        port: int | None = None,
        **options,
    ):
        self.program = binary()
        if self.program is None:
            raise RuntimeError("haproxy is not installed (apt-get install -y haproxy)")
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.port = port or free_port()
        pem = pem_bundle(certificate, key, os.path.join(self.directory, "haproxy.pem"))
        self.config = os.path.join(self.directory, "haproxy.cfg")
        with open(self.config, "w") as f:
            f.write(config_text(self.port, backend_port, pem, **options))
        self.log = os.path.join(self.directory, "haproxy.log")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [self.program, "-db", "-f", self.config], stdout=log, stderr=log
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                with open(self.log, errors="replace") as f:
                    raise RuntimeError(f"haproxy exited: {f.read()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("haproxy did not start in time")

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) and wait."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
