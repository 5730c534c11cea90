"""
The C{mmo-lobby} plugin: characters and rooms, answering gateways over AMP.

    twistd -n mmo-lobby --config cluster.toml
"""

from mmo.process.game import ServiceOptions, make_game_service


class Options(ServiceOptions):
    kind = "lobby"
    longdesc = "Characters and rooms."


def makeService(options: Options, reactor=None):
    from mmo.lobby.service import lobby_service_class

    return make_game_service(options, lobby_service_class(options.config), reactor)
