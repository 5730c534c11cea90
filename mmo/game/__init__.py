"""
Game services and the ways to them.

    L{mmo.game.service}  L{GameService}, the base of the lobby, chat and zones;
                         L{Caller}, who sent a message; pushes to players
    L{mmo.game.routes}   how a gateway reaches the service that owns a message:
                         L{LocalRoute} (same process), L{RemoteRoute} (AMP)
    L{mmo.game.server}   the service side of the RPC a remote route calls
    L{mmo.game.messages} every message between processes on the bus, and
                         every channel name: one typed vocabulary

A gateway (L{mmo.gateway}) routes a client's message here; the service
answers, and pushes go back through the bus to the gateway that holds each
player.
"""
