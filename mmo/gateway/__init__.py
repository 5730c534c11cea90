"""
The gateway: the client-facing side of mmo.

It holds each client connection for the whole session (L{protocol}), built by
a factory that holds the configuration (L{factory}), behind a TLS listener
run by a service (L{service}).
"""
