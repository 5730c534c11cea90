"""
The C{mmo-zone} plugin: the world's regions served by this process (those
whose C{process} in C{[world]} is its name), answering gateways over AMP and
exchanging handoffs, ghosts and pushes through the bus.

    twistd -n mmo-zone --config cluster.toml --process zone-1

With C{--takeover}, it replaces a running process of the same name without
the players noticing (the old one hands its regions over and exits; see
C{docs/world.md}, "Replacing a zone process").
"""

from mmo.process.game import ServiceOptions, make_game_service


class Options(ServiceOptions):
    kind = "zone"
    synopsis = "--config FILE [--process NAME] [--takeover]"
    longdesc = "Simulate regions of the world: movement, areas of interest, handoffs."
    optFlags = [
        [
            "takeover",
            None,
            "Take the regions over from a running process of the same name "
            "(an upgrade), instead of recovering them from the store.",
        ]
    ]


def makeService(options: Options, reactor=None):
    from mmo.zone.host import ZoneHost

    def host(config, store, bus, reactor):
        config.world.check_processes(config.processes, config.file)
        return ZoneHost(
            config, store, bus, reactor, options.process.name, takeover=bool(options["takeover"])
        )

    return make_game_service(options, host, reactor)
