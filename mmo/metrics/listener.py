"""
The C{/metrics} listener of a process: C{[processes.NAME] metrics}, a
C{twisted.web} site serving the registry of L{mmo.metrics.registry}
with prometheus-client's encoders (L{MetricsPage}).

Over TLS (C{metrics_tls = true}, the default) the process presents its
own server certificate and takes only a client certificate of the
deployment's CA naming C{prometheus} or C{admin} (both made by
C{mmo-certs}); a process's certificate is refused, so a process cannot
read another's figures.  Plain HTTP (C{metrics_tls = false}) is allowed
on loopback only, which the config checks.
"""

from __future__ import annotations

from prometheus_client.exposition import choose_encoder
from twisted.application import strports
from twisted.application.service import IService
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web import resource, server

from mmo.config import Config, ProcessSection
from mmo.metrics.registry import REGISTRY
from mmo.tls import internal_server_options, peer_identity

#: The identities whose client certificate may read C{/metrics}.
SCRAPERS = ("prometheus", "admin")


class MetricsPage(resource.Resource):
    """
    C{GET /metrics}: the registry in the format the scraper accepts (the
    Prometheus text format, or OpenMetrics).  With C{scrapers}, a request
    whose connection did not present the certificate of one of them gets
    403.

    Rendered in the reactor's thread, not in a thread of its pool as
    prometheus-client's own Twisted resource (a WSGI application) is: the
    figures read at scrape time are the live objects of the process (a
    zone's entities, a gateway's sessions), which only the reactor's thread
    may read.  A scrape takes a millisecond or two (C{bench/metrics_cost.py}).
    """

    isLeaf = True

    def __init__(self, registry=REGISTRY, scrapers: tuple[str, ...] | None = SCRAPERS):
        super().__init__()
        self.registry = registry
        self.scrapers = scrapers

    def render_GET(self, request) -> bytes:
        if self.scrapers is not None and peer_identity(request.transport, self.scrapers) is None:
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return f"a client certificate of {' or '.join(self.scrapers)} is required\n".encode()
        accept = request.getHeader(b"accept")
        encoder, content_type = choose_encoder(accept.decode("latin-1") if accept else "")
        request.setHeader(b"content-type", content_type.encode())
        return encoder(self.registry)


def site(tls: bool, registry=REGISTRY) -> server.Site:
    """The site: C{/metrics} only (for L{SCRAPERS} only, with C{tls})."""
    root = resource.Resource()
    root.putChild(b"metrics", MetricsPage(registry, SCRAPERS if tls else None))
    made = server.Site(root)
    made.noisy = False
    # A scrape is one request: no access log line per scrape.
    made.log = lambda request: None
    return made


def factory(config: Config, process: ProcessSection, registry=REGISTRY):
    """
    The protocol factory of C{process}'s metrics listener: the site, in TLS
    with its certificate unless C{metrics_tls} is off.

    @raise ConfigError: A certificate cannot be read (the start fails).
    """
    web = site(process.metrics_tls, registry)
    if not process.metrics_tls:
        return web
    return TLSMemoryBIOFactory(internal_server_options(config, process), False, web)


def listen(config: Config, process: ProcessSection, reactor=None) -> IService:
    """A service listening on C{process.metrics} (which must be set)."""
    if reactor is None:
        from twisted.internet import reactor
    return strports.service(process.metrics, factory(config, process), reactor=reactor)
