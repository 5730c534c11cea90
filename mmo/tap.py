"""
The standalone server, C{twistd -n mmo --config FILE}: every service in one
process, for development and small games.
"""

from __future__ import annotations

from mmo import rpc
from mmo.app import ConfigOptions, ProcessService, build
from mmo.gateway.service import GatewayService


class Options(ConfigOptions):
    """Options of the C{mmo} plugin."""

    kind = "mmo"
    synopsis = "--config FILE [--process NAME]"
    longdesc = "Run every mmo service in one process."


def makeService(options: Options, reactor=None) -> ProcessService:
    config, process = options.config, options.process

    def make():
        top = ProcessService(config, process, reactor)
        GatewayService(config, process, reactor=reactor).setServiceParent(top)
        if process.rpc:
            rpc.listen(config, process, reactor=reactor).setServiceParent(top)
        return top

    return build(make)
