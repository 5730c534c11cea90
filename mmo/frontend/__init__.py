"""
The client front end: what accepts a client's connection and speaks the
wire protocol with it, for every process that has clients (login, gateways,
the standalone server).

    L{mmo.frontend.protocol}   L{ClientProtocol}: handshake, dispatch, errors, goodbye
    L{mmo.frontend.factory}    L{ClientFactory}: configuration and live connections
    L{mmo.frontend.listener}   the TLS listener, the factory class a config names
    L{mmo.frontend.websocket}  the secure WebSocket listener (browsers)
    L{mmo.frontend.backlog}    the bound on what a client leaves unread
    L{mmo.frontend.addresses}  connections per address, refused before TLS

What a gateway adds (sessions, routing to game services) is in
L{mmo.gateway}; the login messages are in L{mmo.login}.
"""
