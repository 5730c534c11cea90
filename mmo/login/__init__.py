"""
Login: accounts, password checks, throttles, session tickets and realms.

L{passwords} hashes off the reactor thread, L{tickets} signs and checks
session tickets, L{throttle} slows attackers down, L{service} is the domain
object that knows no bytes, L{protocol} the client messages, L{tap} the
C{mmo-login} plugin.
"""
