"""
The C{mmo-ladder} plugin: ranked queues, matches and the board of every
C{[ladders.NAME]}, answering gateways over AMP.

    twistd -n mmo-ladder --config cluster.toml
"""

from mmo.process.game import ServiceOptions, make_game_service


class Options(ServiceOptions):
    kind = "ladder"
    longdesc = "Ranked queues, matches, results and the board."


def makeService(options: Options, reactor=None):
    from mmo.ladder.service import LadderService

    return make_game_service(options, LadderService, reactor)
