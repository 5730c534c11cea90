"""
The C{mmo-chat} plugin: channels, whispers, history and moderation,
answering gateways over AMP and delivering through the bus.

    twistd -n mmo-chat --config cluster.toml
"""

from mmo.process.game import ServiceOptions, make_game_service


class Options(ServiceOptions):
    kind = "chat"
    longdesc = "Chat channels, whispers, history and moderation."


def makeService(options: Options, reactor=None):
    from mmo.chat.service import ChatService

    return make_game_service(options, ChatService, reactor)
