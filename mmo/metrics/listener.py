"""
The C{/metrics} listener of a process: C{[processes.NAME] metrics}, a
C{twisted.web} site serving the registry of L{mmo.metrics.registry}
through prometheus-client's own resource.

Over TLS (C{metrics_tls = true}, the default) the process presents its
own server certificate and takes only a client certificate of the
deployment's CA naming C{prometheus} or C{admin} (both made by
C{mmo-certs}); a process's certificate is refused, so a process cannot
read another's figures.  Plain HTTP (C{metrics_tls = false}) is allowed
on loopback only, which the config checks.
"""

from __future__ import annotations

from prometheus_client.twisted import MetricsResource
from twisted.application import strports
from twisted.application.service import IService
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web import resource, server

from mmo.config import Config, ProcessSection
from mmo.metrics.registry import REGISTRY
from mmo.tls import internal_server_options, peer_identity

#: The identities whose client certificate may read C{/metrics}.
SCRAPERS = ("prometheus", "admin")


class ScrapersOnly(resource.Resource):
    """
    C{/metrics} for a scraper: a request whose connection did not present
    the certificate of one of L{SCRAPERS} gets 403.

    @ivar metrics: The resource that serves the figures.
    """

    isLeaf = True

    def __init__(self, metrics: resource.IResource, scrapers=SCRAPERS):
        super().__init__()
        self.metrics = metrics
        self.scrapers = tuple(scrapers)

    def render(self, request):
        if peer_identity(request.transport, self.scrapers) is None:
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"a client certificate of prometheus or admin is required\n"
        return self.metrics.render(request)


def site(tls: bool, registry=REGISTRY) -> server.Site:
    """The site: C{/metrics} only (behind L{ScrapersOnly} with C{tls})."""
    metrics = MetricsResource(registry=registry)
    root = resource.Resource()
    root.putChild(b"metrics", ScrapersOnly(metrics) if tls else metrics)
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
