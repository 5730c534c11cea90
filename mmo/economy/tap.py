"""
The C{mmo-economy} plugin: wallets, inventories, shops and trades of the
C{[economy]}, answering gateways over AMP.

    twistd -n mmo-economy --config cluster.toml --process economy
"""

from mmo.process.game import ServiceOptions, make_game_service


class Options(ServiceOptions):
    kind = "economy"
    longdesc = "Wallets, inventories, shops and trades."


def makeService(options: Options, reactor=None):
    from mmo.economy.service import EconomyService

    return make_game_service(options, EconomyService, reactor)
