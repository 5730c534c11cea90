"""
What every mmo process is made of, whatever it serves.

    L{mmo.process.service}  L{ProcessService}, the top service: resources started
                            before the listeners and stopped after them; the
                            C{--config}/C{--process} options of every plugin
    L{mmo.process.control}  the control channel: commands such as C{status},
                            C{drain} or C{handover}, and L{call} to send one
    L{mmo.process.game}     the process of a game-service plugin (lobby, chat,
                            zones): store, bus, the service, its RPC listener
"""
