"""
What TLS session resumption would save a client listener: the server's CPU
per TLS handshake as mmo's client listeners serve it, next to the same
listener with session tickets on, for clients that do not resume and for
clients that do, measured side by side in the same run.

    python bench/tls_sessions.py [--handshakes 400] [--repeats 3] [--json]

The modes, each a server context built as L{mmo.tls.client_facing_tls}
builds it, with a certificate from C{mmo-certs}:

  - C{no_tickets}: the listeners with their tickets off
    (C{session_tickets=False}: Twisted's defaults, no session cache,
    C{OP_NO_TICKET}); under TLS 1.3 OpenSSL still sends two session
    tickets no client can use, and pyOpenSSL has no
    C{SSL_CTX_set_num_tickets} to stop them;
  - C{tickets}: what the listeners run, stateless session tickets on
    (C{enableSessionTickets}), a client that keeps no session: a full
    handshake;
  - C{resumed}: the same listener, the client offering the session of its
    previous handshake.

The client is the standard library's C{ssl} on memory BIOs (it resumes
sessions; pyOpenSSL's client, which Twisted and the SDK use, was not seen
to), in this process; handshakes run one at a time, in memory, so only the
TLS work is counted: the server side's CPU and the client's, per
handshake, in microseconds, and the bytes the server sent.  Each figure is
the median of C{--repeats} runs, the modes taking turns.  Loops are
bounded by count (C{--handshakes}) and time (C{--max-seconds}).
"""

from __future__ import annotations

import cProfile
import os
import shutil
import ssl as stdlib_ssl
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import parser, report  # noqa: E402
from OpenSSL import SSL  # noqa: E402
from tls import bench_config  # noqa: E402

from mmo.tls import ClientFacingTLS, client_facing_options  # noqa: E402

MODES = ("no_tickets", "tickets", "resumed")

#: Flights back and forth that complete any handshake and its tickets.
FLIGHTS = 4


def servers(config) -> dict[str, ClientFacingTLS]:
    """The server side of each mode: mmo's listener TLS, and the same with tickets."""
    process = config.processes["mmo"]
    options = client_facing_options(config, process, session_tickets=False)
    with_tickets = ClientFacingTLS(client_facing_options(config, process), [b"mmo"])
    return {
        "no_tickets": ClientFacingTLS(options, [b"mmo"]),
        "tickets": with_tickets,
        "resumed": with_tickets,
    }


class Handshakes:
    """Handshakes of one mode, one at a time, the client keeping its last session."""

    def __init__(self, server: ClientFacingTLS, client: stdlib_ssl.SSLContext, resume: bool):
        self.server = server
        self.client = client
        self.resume = resume
        self.session = None
        self.server_cpu = self.client_cpu = 0.0
        self.server_bytes = 0
        self.resumed = 0
        self.count = 0

    def one(self) -> None:
        started = time.process_time()
        incoming, outgoing = stdlib_ssl.MemoryBIO(), stdlib_ssl.MemoryBIO()
        client = self.client.wrap_bio(
            incoming,
            outgoing,
            server_hostname="localhost",
            session=self.session if self.resume else None,
        )
        client_cpu = time.process_time() - started
        started = time.process_time()
        server = self.server.serverConnectionForTLS(None)
        server.set_accept_state()
        server_cpu = time.process_time() - started
        for _ in range(FLIGHTS):
            started = time.process_time()
            _step(client.do_handshake, stdlib_ssl.SSLWantReadError)
            # Reading takes in what follows the handshake (the tickets).
            _step(lambda: client.read(1), stdlib_ssl.SSLWantReadError)
            data = outgoing.read()
            client_cpu += time.process_time() - started
            started = time.process_time()
            if data:
                server.bio_write(data)
            _step(server.do_handshake, SSL.WantReadError)
            _step(lambda: server.recv(1), SSL.WantReadError)
            answer = _step(lambda: server.bio_read(65536), SSL.WantReadError) or b""
            server_cpu += time.process_time() - started
            self.server_bytes += len(answer)
            if answer:
                incoming.write(answer)
        self.session = client.session
        self.resumed += client.session_reused
        self.server_cpu += server_cpu
        self.client_cpu += client_cpu
        self.count += 1


def _step(operation, waiting):
    try:
        return operation()
    except waiting:
        return None


def run_mode(handshakes: Handshakes, count: int, deadline: float) -> dict:
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        handshakes.one()
    n = max(handshakes.count, 1)
    return {
        "server_cpu_us": handshakes.server_cpu / n * 1e6,
        "client_cpu_us": handshakes.client_cpu / n * 1e6,
        "server_bytes": handshakes.server_bytes / n,
        "resumed": handshakes.resumed / n,
    }


def main(args) -> None:
    directory = tempfile.mkdtemp(prefix="mmo-bench-")
    try:
        config = bench_config(directory)
        server_of = servers(config)
        client = stdlib_ssl.create_default_context(
            cafile=os.path.join(config.deployment.tls_dir, "ca.crt")
        )
        deadline = time.monotonic() + args.max_seconds
        results: dict[str, list[dict]] = {mode: [] for mode in MODES}
        profiler = cProfile.Profile() if args.profile else None
        for repeat in range(args.repeats):
            for mode in MODES:
                resume = mode == "resumed"
                # Warm up; the resumed mode goes on with the session it got.
                warm = Handshakes(server_of[mode], client, resume)
                run_mode(warm, 5, deadline)
                handshakes = Handshakes(server_of[mode], client, resume)
                handshakes.session = warm.session
                if profiler is not None and repeat == 0 and mode == "no_tickets":
                    profiler.enable()
                results[mode].append(run_mode(handshakes, args.handshakes, deadline))
                if profiler is not None:
                    profiler.disable()
        if profiler is not None:
            profiler.dump_stats(args.profile)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    figures: dict = {"handshakes": args.handshakes, "repeats": args.repeats}
    for mode in MODES:
        for name in ("server_cpu_us", "client_cpu_us", "server_bytes", "resumed"):
            figures[f"{mode}_{name}"] = statistics.median(r[name] for r in results[mode])
    base = figures["no_tickets_server_cpu_us"]
    for mode in ("tickets", "resumed"):
        figures[f"{mode}_server_ratio"] = figures[f"{mode}_server_cpu_us"] / base if base else 0.0
    report(figures, args.json)


if __name__ == "__main__":
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--handshakes", type=int, default=400, help="handshakes per mode and repeat")
    p.add_argument("--repeats", type=int, default=3, help="rounds of every mode (medians)")
    p.add_argument("--max-seconds", type=float, default=60.0, help="stop measuring after this")
    main(p.parse_args())
